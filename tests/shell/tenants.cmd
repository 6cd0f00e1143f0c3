# Tenants: a class and a token-latency SLO on each scheduled session, the
# step order, and bad tenant options.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
start "Once upon a time" -n 8
session new b
start "Lily and the dog" -n 8
sched order priority
sched add --tenant alice --class interactive --slo 5000ms main
sched add --tenant eval --class batch b
info sessions
sched run
info sched
# bad calls
sched order lifo
sched add --class gold b
sched add --slo fast b
sched add --slo 5 --tenant two b
sched add --colour red b
sched add --tenant
