from pathlib import Path

import ajuste


def test_tiny_checkpoints_train(tiny_bert: Path, tiny_gpt2: Path, small_data) -> None:
    texts, labels = small_data
    for checkpoint in (tiny_bert, tiny_gpt2):
        model = ajuste.build(str(checkpoint), trainable="all")
        model.compile(lr=1e-3)
        history = model.fit(texts[:80], labels[:80], validation_data=(texts[80:], labels[80:]), epochs=2, verbose=False)
        assert len(history) == 2
        assert model.predict(texts[:3]).probabilities.shape == (3, 2)
