"""`make demo`: the whole cycle of a cash transfer against the stack `make run` started.

Households from the registry's generator, a provider paying through the PSP sandbox, a
programme, the payroll its scheduler generates, approval by another user, payments dispatched
and settled by signed webhooks, and the reconciliation, all through the gateway with real
tokens. `plan` says what the demo asks for and what it must get (pure), `stack` talks to the
services, `cycle` runs the stages.
"""
