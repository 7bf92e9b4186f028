"""The Peewee store: models, migrations, the one DB thread, and the user, mailbox, message and queue
operations that run on it."""
