"""SMTP: the server (submission for LAN clients, the mesh port for other nodes) and the client that
delivers to other nodes."""
