"""The Discord edge: the bot client, interactions, the job reporter, the moderation log and command
translations. The only part of the package that imports discord."""
