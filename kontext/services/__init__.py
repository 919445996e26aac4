"""Services: the job runner, moderation (admit-and-count) and intake decisions. They talk to the
outside world only through the ports in :mod:`kontext.services.ports`."""
