"""People and organisations: accounts, roles, scope, rosters."""
