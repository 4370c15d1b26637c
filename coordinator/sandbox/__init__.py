"""`meshplane up`: a whole meshplane on one machine, as child processes of one command."""
