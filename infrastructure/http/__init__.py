"""The ledger as an HTTP service: the same commands, rules and read model as the command line.

app.py        the FastAPI application: routes, handlers, the document, the projection
service.py    what every request reaches: the ledger, the read model, the settings
auth.py       bearer tokens scoped to a workspace, hashed at rest
scope.py      commands kept inside one workspace, without a race
bodies.py     request bodies read exactly (numbers as written) and within a size
writes.py     create, the transitions, the batch
reads.py      one run (as of a moment), its history, the list, stats, the tree
health.py     /healthz and /readyz
problems.py   every error as application/problem+json with the contract's code
openapi.py    the document at /openapi.json, made to say what the service does
shapes.py     the shapes of the responses written as plain JSON, for the document
projection.py the projection running beside the service (`serve --with-projection`)
server.py     uvicorn on a socket of our own (`runledger serve`)
"""
