"""A JumpCloud API simulator: a deterministic tenant generator (`simulator.tenant`), a Starlette app that serves
the v1/v2 endpoints jumpsync uses with JumpCloud's paging, filters, errors and quirks (`simulator.app`), fault
knobs (`simulator.faults`), and a threaded uvicorn runner (`simulator.server`). See docs/architecture.md.
"""
