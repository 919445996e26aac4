"""Domain layer: the job record and its states, policy, guild settings, block-list matching, poll
schedule, fair queue, provider-neutral generation types and typed errors. Pure: no I/O, no Discord,
no HTTP, no database; everything here is testable with plain values."""
