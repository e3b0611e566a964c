"""
The real Stable Diffusion 1.5 and 2.1 architectures as constructor arguments (from runwayml/stable-diffusion-v1-5's and
stabilityai/stable-diffusion-2-1's config.json files), so the benchmarks build them with random weights, nothing
downloaded. The text encoders carry CLIP's own special-token ids (transformers 5 finds the pooled token by eos id).
"""
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=768,
                 block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, norm_num_groups=32,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                block_out_channels=(128, 256, 512, 512), norm_num_groups=32,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
SD15_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
                 bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      set_alpha_to_one=False, steps_offset=1, skip_prk_steps=True)

SD21_UNET = dict(sample_size=96, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=1024,
                 block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
                 use_linear_projection=True, upcast_attention=True, norm_num_groups=32,
                 down_block_types=SD15_UNET["down_block_types"], up_block_types=SD15_UNET["up_block_types"])
SD21_TEXT = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                 num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
                 bos_token_id=49406, eos_token_id=49407, pad_token_id=0)
SD21_VAE = dict(SD15_VAE, sample_size=768)  # the same autoencoder, trained further
