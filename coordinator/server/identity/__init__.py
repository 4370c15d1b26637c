"""Who is calling the coordinator and what they may do: authentication, roles, audit."""
