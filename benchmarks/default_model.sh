#!/usr/bin/env bash
# Reproduces the default world model shipped in vap_env/default_model/ (see its MODEL_CARD.md) and the
# figures the README and the model card show, on a CPU: on an idle 2-core CPU about 2.2 hours of recording
# and training (recording ~12 minutes, codec ~45, world model ~50 with its set-up, segmenter ~23), then about
# an hour of evaluations (the 10-episode one that fits the segmenter, contact fidelity, push and reach). After an
# interruption run it again: complete data is kept, the trainings go on from their last checkpoints
# (`--resume` starts afresh where there is none), the evaluations start over. Run from the repository root
# with the venv active. The recipe is experiment 15 of docs/results/interaction_experiments.md, the
# evaluation's cube estimate experiment 16's.
set -euo pipefail
export OMP_NUM_THREADS=1
mkdir -p data runs

# record TASK EPISODES OUT "SPEC SEED"...: EPISODES episodes of each policy SPEC from reset seed SEED on.
record() {
  local task=$1 episodes=$2 out=$3 spec_seed
  shift 3
  for spec_seed in "$@"; do
    set -- $spec_seed
    vap-env collect --robot panda --task "$task" --episodes "$episodes" --policy "$1" --seed "$2" \
      --camera random --image-size 128 --out "$out" --quiet
  done
}

# 1. Data: Panda push, 128x128, a random camera viewpoint per episode around the default (workspace)
#    camera, from a family that covers contact without success as well as clean pushes: the scripted expert
#    with graded action noise and hesitation, pushes aimed 45-315 degrees off the goal line, the push away
#    from the goal (aim 180), a pass 8 cm above the cube, pushes that stall after 3 or 8 steps, random
#    actions. 880 training episodes (A, B, C-1, C-2), two recording processes; held-out H: 30 episodes of 4
#    skills on other seeds, hence other initial states and viewpoints.
H=data/push128_heldout A=data/push128_train_a B=data/push128_train_b C=data/push128_train_c
if [ ! -d $C-2 ]; then
  rm -rf $H $A $B $C-1 $C-2.tmp
  (
    record push 8 $H "scripted:noise=0.0 100000" "scripted:noise=0.5,hesitation=0.15 101000"
    record push 7 $H "scripted:aim=90 102000" "scripted:noise=1.0,hesitation=0.3 103000"
    record push 90 $A "scripted:noise=0.0 0" "scripted:noise=0.3,hesitation=0.1 1000"
    record push 40 $A "scripted:aim=180 4000"
    record push 30 $A "scripted:hover=0.08 5000" "scripted:stall_after=3 6000"
    record push 40 $C-1 "scripted:aim=45,noise=0.3,hesitation=0.1 11000" \
      "scripted:aim=90,noise=0.3,hesitation=0.1 12000" "scripted:aim=135,noise=0.3,hesitation=0.1 13000"
  ) &
  record push 90 $B "scripted:noise=0.6,hesitation=0.2 2000" "scripted:noise=1.0,hesitation=0.3 3000"
  record push 40 $B "scripted:aim=90 7000" "scripted:aim=270 8000"
  record push 30 $B "scripted:stall_after=8 9000" "random 10000"
  record push 40 $C-2.tmp "scripted:aim=180,noise=0.3,hesitation=0.1 14000" \
    "scripted:aim=225,noise=0.3,hesitation=0.1 15000" "scripted:aim=270,noise=0.3,hesitation=0.1 16000" \
    "scripted:aim=315,noise=0.3,hesitation=0.1 17000"
  wait
  mv $C-2.tmp $C-2  # last: its presence says the data is complete
fi

# 2. The codec: 4x, 8 latent channels (128x128x3 -> 32x32x8), the loss weighted 30x on the cube.
OMP_NUM_THREADS=2 vap-env train-codec --data $A $B --val-data $H --out runs/codec4_128 --image-size 128 \
  --downsample 4 --latent-channels 8 --steps 3000 --eval-every 500 --object-weight 30 --resume

# 3. The world model: the tiny CogVideoX transformer + ControlNet + LoRA, trained jointly from scratch at
#    128x128 on depth-silhouette (`hull`) prompts, two context frames on the channels, context noise, the
#    newest context frame's robot moved by the kinematics and its cube moved by the object dynamics the
#    trainer fits first (`object_warp`), the loss weighted 10x on the cube, EMA weights.
python -c "from vap_env.model.config import WorldModelConfig as C; print(C.tiny(image_size=128, \
  context_frames=2, context_noise_log_sigma=-2.0, controlnet_encoder_unshuffle=4, \
  context_layout='channels', prompt='hull', warped_context=True, object_warp=True).to_json())" \
  > runs/default_model_config.json
OMP_NUM_THREADS=2 vap-env train --data $A $B $C-1 $C-2 --val-data $H --codec runs/codec4_128 \
  --config runs/default_model_config.json --stage joint --steps 3000 --eval-every 1000 \
  --checkpoint-every 500 --object-weight 10 --ema --out runs/default --resume

# 4. Its robot segmenter (for mask ST-IoU), fitted by a first 10-episode evaluation on fresh simulator
#    frames and this codec's reconstructions; then the model and the segmenter become the default.
OMP_NUM_THREADS=2 vap-env evaluate --model runs/default/model --camera random --episodes 10 --seed 200000 \
  --out runs/default_eval
rm -rf vap_env/default_model/model vap_env/default_model/segmenter
cp -r runs/default/model vap_env/default_model/model
cp -r runs/default_eval/segmenter vap_env/default_model/segmenter

# 5. Open-loop contact fidelity on the held-out pushes (the contact windows, every episode, the repeat
#    baseline; the cube tracks plotted).
OMP_NUM_THREADS=2 python benchmarks/contact_fidelity.py --models default --data $H \
  --segmenter vap_env/default_model/segmenter --json docs/results/default_model_contact.json \
  --tracks docs/images/default_model_tracks.png --videos runs/default_contact_videos

# 6. Policy evaluation with the shipped model: the push family (7 policies) and the reach family x 50
#    held-out episodes (seeds 200000+, random viewpoints).
OMP_NUM_THREADS=2 vap-env evaluate --model default --camera random --episodes 50 --seed 200000 --horizon 16 \
  --videos 1 --out docs/results/policy_evaluation
OMP_NUM_THREADS=2 vap-env evaluate --model default --task reach --camera random --episodes 50 --seed 200000 \
  --horizon 16 --videos 1 --out docs/results/policy_evaluation_reach
