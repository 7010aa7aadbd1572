"""One package per Lambda function (Handler: functions/<name>/app.lambda_handler).

Lambda imports this package before the handler module, so a cold start begins here. The cyclic
garbage collector is paused while the handler's imports run: they build ~100k objects that live as
long as the container, and collecting ~200 times while they load (about 45 ms of a 400 ms cold
start, `make bench ONLY=cold_start`) frees next to nothing. shared.platform.observability.entrypoint
resumes it once the handler is defined.
"""

import gc

gc.disable()
