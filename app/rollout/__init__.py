"""Model roll-out: several versions loaded at once, each with its own batcher (``serving``); which
one answers a request (``rollout``: live, canary, shadow, previous); what changes it (the model
directory, a roll-out file, the admin API: ``watcher``); the candidate's answers compared with the
live ones (``shadow``)."""
