"""The tiny training budget every RL test uses (seconds per run on two CPU cores)."""

FAST = dict(
    hidden_size=16,
    num_envs=8,
    minibatch_envs=4,
    seq_len=4,
    bc_rounds=1,
    bc_envs=8,
    bc_epochs=3,
    critic_pretrain_epochs=3,
    expert_label_envs=4,
    eval_every=0,
    tensorboard=False,
)
