"""Online serving (issue 7), Ray-free: the HTTP bodies (api), the typed config (config), and the online logic
over the nightly job's Bundle and stages (online: recommend and cold start; ctr; explain). actors/serve.py
wraps them in Ray Serve deployments; jobs/serve.py starts the app."""
