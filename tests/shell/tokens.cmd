# tokenize and detokenize; emb() says how a word that is not one token splits.
# expect-exit: 1
tokenize "Once upon a time"
load models/stories260K.gguf
tokenize "Once upon a time"
tokenize Once upon  a   time --no-bos
tokenize "  Lily\n"
tokenize "Lily" --bos
tokenize --no-bos
tokenize "x" --eos
detokenize 1 403 407 261 378
detokenize [1, 403, 407, 261, 378]
detokenize 407 261
detokenize 403 512
detokenize 403 -1
detokenize x
detokenize [,]
start "Once upon a time"
step
steer embed add emb("upon a time")
steer embed add emb("Lily")
set output json
tokenize "a time" --no-bos
detokenize 261 378
set output text
