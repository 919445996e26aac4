"""The APIMart image provider (Flux Kontext): transport, reply parsing and error classification."""
