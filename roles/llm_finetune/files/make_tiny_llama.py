"""Make a tiny Llama-family causal LM and a small chat data set, offline, in Hugging Face format.

SmolLM-135M (the fine-tuning default) is a LlamaForCausalLM; no model hub is reachable in the lab or in
CI, so the tests fine-tune a model of the same architecture made here from a config: a byte-level BPE
tokenizer trained on the data set's own text (tokenizers), random weights (transformers), saved with
save_pretrained. The data set is question/answer conversations in Oumi's format (text_sft_jsonl), about
a made-up fact table, so that a few dozen steps visibly lower the loss.

    make_tiny_llama.py --model-dir DIR --dataset FILE [--examples N] [--seed S]

Prints one JSON line: {model_dir, dataset, examples, parameters, vocab_size}.
"""

import argparse
import json
import os
import random
import sys

COLOURS = ["red", "green", "blue", "amber", "violet", "white", "black", "silver"]
THINGS = ["node", "rack", "switch", "gpu", "disk", "fan", "cable", "port", "job", "queue", "lease", "volume"]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def conversations(count, seed):
    """Question/answer pairs over a fixed table thing -> colour: learnable in a few steps."""
    table = {thing: COLOURS[i % len(COLOURS)] for i, thing in enumerate(THINGS)}
    rng = random.Random(seed)
    out = []
    for unused in range(count):
        thing = rng.choice(THINGS)
        out.append({"messages": [
            {"role": "user", "content": f"What colour is the {thing}?"},
            {"role": "assistant", "content": f"The {thing} is {table[thing]}."},
        ]})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args(argv)

    # Imported here: --help works without the fine-tuning venv.
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    data = conversations(args.examples, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.dataset)), exist_ok=True)
    with open(args.dataset, "w", encoding="utf-8") as handle:
        for row in data:
            handle.write(json.dumps(row) + "\n")

    texts = [m["content"] for row in data for m in row["messages"]] + ["user assistant system"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=512, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
        unk_token="<|endoftext|>", pad_token="<pad>", model_max_length=128)

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=args.hidden_size, intermediate_size=args.hidden_size * 2,
        num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(args.model_dir)
    tokenizer.save_pretrained(args.model_dir)
    print(json.dumps({"model_dir": args.model_dir, "dataset": args.dataset, "examples": len(data),
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "vocab_size": len(tokenizer)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
