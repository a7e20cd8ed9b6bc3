"""What a jumpsync process is configured with: the settings (``config.settings``) and the action names."""
