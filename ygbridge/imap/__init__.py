"""The IMAP server for LAN clients: wire parsing, commands, sessions, and mailboxes over the store."""
