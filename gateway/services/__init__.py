"""Narrow ports the protocol adapters reach the core through (step-ca's per-protocol
interfaces as the model): each module declares a ``typing.Protocol`` and its
implementation on top of gateway.store and the CA backends.  gateway.runtime.Gateway
builds them once and hands them to the adapters; protocols/ import no store and call
no backend."""
