"""``tcd``: the command-line front end of the thermodynamic co-design simulator."""
