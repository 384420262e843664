#!/usr/bin/env bash
# Reproduces the default world model shipped in vap_env/default_model/ (see its MODEL_CARD.md) and the
# prompt-kind comparison in the README, on a CPU: data (about 5 min), codec (about 15 min on an idle 2-core
# CPU), pretrain base, seven conditioning variants on push, evaluation; then the skeleton variant continued on
# push + reach and distilled into one denoising step is the shipped model. Run from the repository root with
# the venv active. Threads: one per process, two processes share the variants (two cores).
set -euo pipefail
export OMP_NUM_THREADS=1

# record TASK EPISODES OUT "SPEC SEED"...: EPISODES episodes of each policy SPEC from reset seed SEED on.
record() {
  local task=$1 episodes=$2 out=$3 spec_seed
  shift 3
  for spec_seed in "$@"; do
    set -- $spec_seed
    vap-env collect --robot panda --task "$task" --episodes "$episodes" --policy "$1" --seed "$2" \
      --camera random --image-size 64 --out "$out" --quiet
  done
}

# 1. Data: Panda push, 64x64, a random camera viewpoint per episode. Training: 4 skills x 50 episodes
#    (the scripted expert with growing action noise and hesitation: failures, contact, the cube moving).
#    Held-out: 2 skills x 15 episodes on other seeds, hence other initial states and viewpoints.
record push 50 data/panda_push_train "scripted:noise=0.0 0" "scripted:noise=0.3,hesitation=0.1 1000" \
  "scripted:noise=0.6,hesitation=0.2 2000" "scripted:noise=1.0,hesitation=0.3 3000"
record push 15 data/panda_push_heldout "scripted:noise=0.0 100000" "scripted:noise=0.5,hesitation=0.15 101000"
#    Panda reach, same skills (40 episodes each) plus 40 of random actions (the arm anywhere); held-out:
#    2 skills x 10 episodes on other seeds.
record reach 40 data/panda_reach_train "scripted:noise=0.0 10000" "scripted:noise=0.3,hesitation=0.1 11000" \
  "scripted:noise=0.6,hesitation=0.2 12000" "scripted:noise=1.0,hesitation=0.3 13000" "random 14000"
record reach 10 data/panda_reach_heldout "scripted:noise=0.0 110000" "scripted:noise=0.5,hesitation=0.15 111000"

# 2. The codec (4x, 8 latent channels). The shipped one trained 2500 steps, then was resumed to 4000
#    (a warm restart of the cosine schedule); a single `--steps 4000` run is the clean equivalent. It was
#    trained before the codec loss weighted the cube (`--object-weight`, default 30 since): 0 reproduces it.
OMP_NUM_THREADS=2 vap-env train-codec --data data/panda_push_train --val-data data/panda_push_heldout \
  --out runs/codec4 --image-size 64 --steps 4000 --eval-every 500 --object-weight 0

# 3. The pretrain base (video continuation without actions), then the seven variants, 1500 control steps
#    each, on two processes; then the evaluation of all of them (segmenter fit, open-loop replays).
OMP_NUM_THREADS=2 vap-env train --data data/panda_push_train --val-data data/panda_push_heldout \
  --codec runs/codec4 --out runs/pretrain --config tiny --stage pretrain --prompt none --steps 3000 \
  --eval-every 1000 --checkpoint-every 1000
common=(--data data/panda_push_train --val-data data/panda_push_heldout --pretrain runs/pretrain
        --out runs/compare --steps 1500)
python benchmarks/prompt_comparison.py "${common[@]}" --variants skeleton,mask,lora_only,none --train-only &
python benchmarks/prompt_comparison.py "${common[@]}" --variants controlnet_only,depth_skeleton,state --train-only
wait
python benchmarks/prompt_comparison.py "${common[@]}" \
  --json docs/results/prompt_comparison.json --plot docs/images/prompt_comparison.png

# 4. The shipped model: the skeleton variant (ControlNet + LoRA, the paper's recipe) continued for 6000
#    control steps on push + reach (the codec, trained on push, reconstructs held-out reach at 33.2 dB), with
#    the segmenter; the push-only variant is kept for the per-task comparison of step 5.
OMP_NUM_THREADS=2 vap-env train --data data/panda_push_train data/panda_reach_train \
  --val-data data/panda_push_heldout data/panda_reach_heldout --out runs/default --stage control \
  --init runs/compare/skeleton --steps 6000 --eval-every 1000 --checkpoint-every 1000

#    Then distilled into one denoising step (progressive distillation): the 4-step model above, frozen,
#    samples with 2 steps (held-out: as good as with 4, docs/results/few_step_sampling.md) and a copy of it
#    learns to do in one step what those two do. 2000 steps, about 18 minutes on the idle 2-core CPU.
OMP_NUM_THREADS=2 vap-env train --data data/panda_push_train data/panda_reach_train \
  --val-data data/panda_push_heldout data/panda_reach_heldout --out runs/distill1 --stage distill \
  --init runs/default --num-inference-steps 1 --steps 2000 --lr 1e-4 --ema --eval-every 500 \
  --checkpoint-every 250
rm -rf vap_env/default_model/model vap_env/default_model/segmenter
cp -r runs/distill1/model vap_env/default_model/model
cp -r runs/compare/segmenter vap_env/default_model/segmenter

# 5. Per-task held-out open-loop fidelity of the shipped (1-step) model, of the 4-step model it was
#    distilled from, and of the push-only skeleton variant.
python benchmarks/heldout_fidelity.py --models default runs/default runs/compare/skeleton \
  --data data/panda_push_heldout data/panda_reach_heldout --json docs/results/default_model_heldout.json

# 6. Policy evaluation with the shipped model: the push family (7 policies) x 50 held-out episodes (seeds
#    200000+).
vap-env evaluate --model default --camera random --episodes 50 --seed 200000 --horizon 16 --videos 1 \
  --out docs/results/policy_evaluation
