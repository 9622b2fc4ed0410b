"""Hot reload of the config file (`SIGHUP`, `POST /-/reload`)."""
