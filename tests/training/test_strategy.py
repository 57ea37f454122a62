import json
import subprocess
import sys
import textwrap


def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    # Logical devices must be configured before TensorFlow initialises, hence a fresh process.
    script = textwrap.dedent(
        f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from training.train import TrainConfig, make_strategy, train
        strategy = make_strategy("mirrored")
        result = train(TrainConfig(arch="a3-model2", epochs=1, limit_train=512, batch_size=64,
                                   strategy="mirrored", histograms=False), r"{tmp_path / "run"}", verbose=0)
        print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "val": result.val_accuracy}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["replicas"] == 2
    assert outcome["val"] > 0.3  # one epoch on 512 images across two replicas still learns
