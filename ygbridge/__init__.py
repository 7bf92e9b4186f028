"""ygbridge: mail for the Yggdrasil mesh, a Twisted service beside a running yggdrasil router.

SMTP submission and IMAP for LAN clients, SMTP between mesh nodes, a Peewee store; docs/ maps
the modules and a message's path through them.
"""
