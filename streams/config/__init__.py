"""Where everything lives and how to reach it: settings, secrets, TLS file locations, logging."""
