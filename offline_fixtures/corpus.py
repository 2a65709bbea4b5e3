"""The embedded training corpus of the fixture tokenizers.

It is small but deliberately hostile to detokenizers and word-list builders: English
prose, Chinese, Japanese, Korean, emoji (ZWJ sequences, flags, skin tones), combining
and precomposed accents, indented Python and runs of spaces, tabs and newlines. Tests
elsewhere reuse `TRAINING_TEXTS` as multilingual sample text, so keep every entry a
realistic piece of text (not a list of symbols) and never change one casually: a change
alters the trained vocabularies, and the fixture key (see `recipe_key`) rebuilds them.
"""

from __future__ import annotations

import hashlib

ENGLISH: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog. Then it runs back into the forest.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman "
    "who told stories to anyone who would listen.",
    "Large language models generate text one token at a time; each new token depends "
    "on every token that came before it.",
    "Streaming responses let the client show words as soon as they are produced, "
    "instead of waiting for the whole answer.",
    "Please stop when you reach the end of the sentence, and do not repeat yourself.",
    "The weather today is sunny with a light breeze from the west. Tomorrow it will rain.",
    'She said: "I don\'t know what you mean," and walked away without another word.',
    "Numbers such as 3.14159, 42, 1,000,000 and 2024-06-30 appear in ordinary text too.",
    "Hello, world! How are you today? I am fine, thank you very much.",
    "A tokenizer splits text into pieces; a detokenizer must put them back together "
    "exactly, including spaces, punctuation and characters that span several bytes.",
    "The server answered every request with a final response, even when the client "
    "disconnected early or the input was invalid.",
    "In the beginning there was nothing but the wind over the water and the light "
    "of distant stars.",
    "User: What is the capital of France?\nAssistant: The capital of France is Paris.",
    "Stop words end generation; bad words are never produced; both are lists of words.",
)

CHINESE: tuple[str, ...] = (
    "今天天气很好，我们一起去公园散步吧。",
    "大型语言模型一次生成一个词元，每个新词元都取决于之前的所有词元。",
    "从前有一座山，山里有一座庙，庙里有一个老和尚在给小和尚讲故事。",
    "请在句子结束时停止，不要重复。谢谢！",
    "北京是中国的首都，上海是最大的城市。",
)

JAPANESE: tuple[str, ...] = (
    "今日はとても良い天気ですね。散歩に行きましょう。",
    "東京は日本の首都です。カタカナとひらがなと漢字を使います。",
    "ストリーミングでは、単語が生成されるとすぐに表示されます。",
    "吾輩は猫である。名前はまだ無い。",
)

KOREAN: tuple[str, ...] = (
    "안녕하세요, 만나서 반갑습니다. 오늘 날씨가 정말 좋네요.",
    "서울은 대한민국의 수도입니다. 한글은 아름다운 문자입니다.",
    "언어 모델은 한 번에 하나의 토큰을 생성합니다.",
)

EMOJI: tuple[str, ...] = (
    "I love pizza 🍕 and ice cream 🍦! 😀😃😄",
    "Family: 👨‍👩‍👧‍👦, couple: 👩‍❤️‍👨, technologist: 🧑‍💻, rainbow flag: 🏳️‍🌈.",
    "Flags: 🇫🇷 🇯🇵 🇰🇷 🇺🇸 🇨🇳 🇩🇪 and skin tones: 👍🏽 👋🏿 ✌🏻",
    "Weather report: ☀️ then 🌧️, later ⛈️ and finally 🌈. Mood: 🙂 → 😢 → 🎉",
    "Rocket launch 🚀🚀🚀 at 10:00! Hearts ❤️💙💚💛💜🖤",
)

ACCENTS: tuple[str, ...] = (
    # Precomposed (NFC) forms.
    "Café, naïve, résumé, façade, jalapeño, Ångström, Ærøskøbing, Straße, Œuvre.",
    "Le garçon a mangé une crème brûlée à l'hôtel près de la forêt.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein, sagte der Müller.",
    # Decomposed forms: a base letter followed by a combining accent.
    "Cafe\u0301, nai\u0308ve, re\u0301sume\u0301, jalapen\u0303o, A\u030angstro\u0308m.",
    "Combining marks stack: e\u0301\u0302, a\u0300\u0301, o\u0308\u0304, n\u0303.",
    "Tiếng Việt có nhiều dấu: người, được, những, chữ quốc ngữ.",
    "Ελληνικά: καλημέρα κόσμε. Русский: привет, мир! עברית: שלום. العربية: مرحبا",
)

CODE: tuple[str, ...] = (
    "def fibonacci(n: int) -> int:\n"
    '    """Return the n-th Fibonacci number."""\n'
    "    if n < 2:\n"
    "        return n\n"
    "    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "class Stack:\n"
    "    def __init__(self):\n"
    "        self.items = []\n"
    "\n"
    "    def push(self, item):\n"
    "        self.items.append(item)\n"
    "\n"
    "    def pop(self):\n"
    "        if not self.items:\n"
    '            raise IndexError("pop from empty stack")\n'
    "        return self.items.pop()\n",
    "for i in range(10):\n"
    "    for j in range(i):\n"
    "        if (i * j) % 3 == 0:\n"
    '            print(f"{i} x {j} = {i * j}")\n',
    "import json\n\nwith open('data.json', encoding='utf-8') as f:\n"
    "    data = json.load(f)\n"
    "print({k: v for k, v in data.items() if v is not None})\n",
    'int main(void) {\n\tprintf("hello\\n");\n\treturn 0;\n}\n',
)

WHITESPACE: tuple[str, ...] = (
    "Two  spaces,   three   spaces,    four    spaces, and a tab\there.",
    "Tabs\t\tbetween\t\t\twords\tand trailing spaces   \n",
    "Line one\nLine two\n\nLine four after a blank line\n\n\nAfter two blank lines",
    "   leading spaces, then\r\nWindows line endings\r\nand\u00a0no-break\u00a0spaces.",
    "Columns:\n  name    value\n  alpha   1\n  beta    22\n  gamma   333\n",
)

# Deterministic filler: many short sentences built from the words above, so that BPE
# training sees each frequent word often enough to learn whole-word pieces (tests need
# words like "stop" or "hello" to exist as single tokens and as several).
_SUBJECTS = ("The model", "A user", "The server", "My friend", "The old fisherman", "She")
_VERBS = ("writes", "reads", "stops", "streams", "answers", "says hello to", "finds")
_OBJECTS = ("the answer", "a story", "every token", "the world", "the end", "a word")


def _filler() -> tuple[str, ...]:
    sentences = []
    for i, subject in enumerate(_SUBJECTS):
        for j, verb in enumerate(_VERBS):
            obj = _OBJECTS[(i + j) % len(_OBJECTS)]
            sentences.append(f"{subject} {verb} {obj}.")
    # Group into paragraphs so lines are of realistic length.
    return tuple(" ".join(sentences[k : k + 6]) for k in range(0, len(sentences), 6))


FILLER: tuple[str, ...] = _filler()

TRAINING_TEXTS: tuple[str, ...] = (
    ENGLISH + CHINESE + JAPANESE + KOREAN + EMOJI + ACCENTS + CODE + WHITESPACE + FILLER
)


def corpus_digest() -> str:
    """A short hash of the corpus: part of the fixture key, so a corpus edit rebuilds."""
    h = hashlib.sha256()
    for text in TRAINING_TEXTS:
        h.update(text.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]
