"""Staff accounts (people on duty) and machine bearer tokens: who may use the admin side."""
