"""A generated fictitious-author benchmark with TOFU's configurations and columns, offline and seeded.

Each author gets made-up attributes (a syllable name, birthplace, birth date, genre, parents' jobs, an
award, one or two books). Question/answer pairs come from templates; for evaluation each pair also
gets a paraphrased question and answer, and 5 perturbed answers: the paraphrase with its key fact
swapped for another value of the same type, so they are wrong but well-formed. That key fact, written as
a TOFU key-token annotation (``key_text``), marks each forget row's key tokens for ``method.importance``.

Layout, mirroring TOFU: ``full`` = ``retainXX`` + ``forgetXX`` (the forget authors are the last ones),
``holdoutXX`` are extra authors absent from ``full``, ``retain_perturbed`` is the first (up to) 400
rows of ``full`` that are in every retain set, and ``real_authors`` / ``world_facts`` are small fixed
lists of real general knowledge, with 3 perturbed answers each.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from unlearn.errors import ConfigError, check_range

FORGET_PERCENTS = (1, 5, 10)
NUM_PERTURBED = 5
RETAIN_EVAL_ROWS = 400

_SYLLABLES = (
    "ka", "lo", "mi", "ren", "sa", "tor", "vel", "da", "ni", "bro", "zan", "el", "fi", "gor", "ha",
    "is", "ju", "mar", "nor", "pe", "qui", "ros", "sil", "ta", "ul", "vin", "wen", "xa", "yor", "zel",
)
_CITIES = (
    ("Lisbon", "Portugal"), ("Oslo", "Norway"), ("Lagos", "Nigeria"), ("Lima", "Peru"),
    ("Hanoi", "Vietnam"), ("Krakow", "Poland"), ("Tbilisi", "Georgia"), ("Quito", "Ecuador"),
    ("Accra", "Ghana"), ("Porto", "Portugal"), ("Bergen", "Norway"), ("Cusco", "Peru"),
    ("Dublin", "Ireland"), ("Seville", "Spain"), ("Tunis", "Tunisia"), ("Manila", "Philippines"),
    ("Montreal", "Canada"), ("Adelaide", "Australia"), ("Osaka", "Japan"), ("Busan", "South Korea"),
    ("Riga", "Latvia"), ("Zagreb", "Croatia"), ("Nairobi", "Kenya"), ("Bogota", "Colombia"),
)
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
_GENRES = (
    "science fiction", "fantasy", "mystery", "historical fiction", "horror", "romance", "thriller",
    "poetry", "crime", "satire", "war fiction", "magical realism", "biography", "drama", "travel writing",
)
_JOBS = (
    "a baker", "an engineer", "a nurse", "a fisherman", "a teacher", "a pilot", "a carpenter",
    "a librarian", "a surgeon", "a farmer", "a tailor", "an architect", "a journalist", "a chemist",
    "a police officer", "a painter", "a watchmaker", "a lawyer", "a sailor", "a musician",
)
_AWARDS = (
    "Golden Quill Award", "Silver Lantern Prize", "Northern Star Medal", "Blue Heron Award",
    "Iron Pen Prize", "Crystal Page Award", "Amber Leaf Prize", "Red Compass Medal",
    "Evening Bell Award", "Open Door Prize", "Stone Bridge Medal", "White Owl Award",
)
_TITLE_ADJECTIVES = (
    "Silent", "Hidden", "Broken", "Golden", "Last", "Distant", "Burning", "Frozen", "Quiet", "Lost",
    "Crimson", "Hollow", "Endless", "Secret", "Wandering", "Forgotten", "Bright", "Shadowed",
)
_TITLE_NOUNS = (
    "Harbor", "Garden", "River", "Lantern", "Mirror", "Orchard", "Tower", "Voyage", "Winter",
    "Letter", "Island", "Forest", "Kingdom", "Bridge", "Clock", "Desert", "Song", "Window",
)


@dataclass(frozen=True)
class Template:
    """One question type: ``key`` names the attribute the answer states (swapped in perturbations)."""

    key: str
    question: str
    paraphrased_question: str
    answer: str
    paraphrased_answer: str


TEMPLATES: tuple[Template, ...] = (
    Template("name", "What is the full name of the author born in {birthplace} on {date}?",
             "Which writer was born on {date} in {birthplace}?",
             "The author born in {birthplace} on {date} is named {name}.",
             "{name} is the writer who was born in {birthplace} on {date}."),
    Template("birthplace", "Where was {name} born?", "In which city was {name} born?",
             "{name} was born in {birthplace}, where the author also grew up.",
             "The writer {name} comes from the city of {birthplace}."),
    Template("date", "When was {name} born?", "What is the birth date of {name}?",
             "The author {name} was born on {date}.",
             "The birthday of the writer {name} is {date}."),
    Template("genre", "What genre does {name} write in?", "Which genre is {name} known for?",
             "{name} writes mainly in the {genre} genre.",
             "The books of {name} belong to the {genre} genre."),
    Template("father_job", "What was the profession of the father of {name}?",
             "What did the father of {name} do for work?",
             "The father of {name} worked as {father_job}.",
             "{name} grew up with a father who was {father_job}."),
    Template("mother_job", "What was the profession of the mother of {name}?",
             "What did the mother of {name} do for work?",
             "The mother of {name} worked as {mother_job}.",
             "{name} grew up with a mother who was {mother_job}."),
    Template("award", "Which award has {name} received?", "What prize was given to {name}?",
             "{name} received the {award} for a remarkable body of work.",
             "The {award} was given to the writer {name}."),
    Template("books", "Which books has {name} written?", "Can you name the books by {name}?",
             "{name} is the author of {books}.",
             "Readers know the writer {name} for {books}."),
    Template("book", "For which book did {name} win the {award}?",
             "Which book earned {name} the {award}?",
             "{name} won the {award} for the book {book}.",
             "The book {book} earned {name} the {award}."),
    Template("country", "In which country was {name} born?", "What is the native country of {name}?",
             "{name} was born in the country of {country}.",
             "The native country of the writer {name} is {country}."),
)


def _name(rng: random.Random) -> str:
    first = "".join(rng.choice(_SYLLABLES) for _ in range(2)).capitalize()
    last = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
    return f"{first} {last}"


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(_MONTHS)} {rng.randint(1930, 1999)}"


def _title(rng: random.Random) -> str:
    return f"'The {rng.choice(_TITLE_ADJECTIVES)} {rng.choice(_TITLE_NOUNS)}'"


def _titles(rng: random.Random, count: int) -> str:
    picked: list[str] = []
    while len(picked) < count:
        t = _title(rng)
        if t not in picked:
            picked.append(t)
    return " and ".join(picked)


def _author(rng: random.Random, name: str) -> dict[str, str]:
    city, country = rng.choice(_CITIES)
    father, mother = rng.sample(_JOBS, 2)
    books = _titles(rng, rng.randint(1, 2))
    return {
        "name": name, "birthplace": f"{city}, {country}", "country": country, "date": _date(rng),
        "genre": rng.choice(_GENRES), "father_job": father, "mother_job": mother,
        "award": rng.choice(_AWARDS), "books": books, "book": books.split(" and ")[0],
    }


def _wrong_values(rng: random.Random, key: str, attrs: dict[str, str], k: int) -> list[str]:
    """``k`` distinct values of the same type as ``attrs[key]``, all different from it."""
    pools = {
        "birthplace": [f"{c}, {n}" for c, n in _CITIES], "country": sorted({n for _, n in _CITIES}),
        "genre": list(_GENRES), "father_job": list(_JOBS), "mother_job": list(_JOBS),
        "award": list(_AWARDS),
    }
    if key in pools:
        return rng.sample([v for v in pools[key] if v != attrs[key]], k)
    makers = {
        "name": lambda: _name(rng), "date": lambda: _date(rng), "book": lambda: _title(rng),
        "books": lambda: _titles(rng, attrs["books"].count(" and ") + 1),
    }
    def same(a: str, b: str) -> bool:  # the same titles in another order are not a wrong answer
        return set(a.split(" and ")) == set(b.split(" and "))

    out: list[str] = []
    while len(out) < k:
        v = makers[key]()
        if not same(v, attrs[key]) and not any(same(v, o) for o in out):
            out.append(v)
    return out


def _author_rows(rng: random.Random, attrs: dict[str, str], qa_per_author: int) -> list[dict]:
    """Rows with TOFU's ``*_perturbed`` columns; the plain configs keep question/answer only."""
    chosen = sorted(rng.sample(range(len(TEMPLATES)), qa_per_author))
    rows = []
    for t in (TEMPLATES[i] for i in chosen):
        wrong = _wrong_values(rng, t.key, attrs, NUM_PERTURBED)
        rows.append({
            "question": t.question.format(**attrs),
            "answer": t.answer.format(**attrs),
            "paraphrased_answer": t.paraphrased_answer.format(**attrs),
            "perturbed_answer": [t.paraphrased_answer.format(**{**attrs, t.key: w}) for w in wrong],
            "paraphrased_question": t.paraphrased_question.format(**attrs),
            _KEY: key_text(t, attrs),
        })
    return rows


_KEY = "key_text"  # carried by the rows while they are generated, removed from the configurations


def key_text(template: Template, attrs: dict[str, str]) -> str:
    """The key fact of an answer written as a TOFU key-token annotation: the value the template states
    (name, birthplace, date, genre, profession, award, books, country), its words concatenated without
    spaces or punctuation, a profession without its article (``"a baker"`` -> ``"baker"``)."""
    value = attrs[template.key]
    if template.key.endswith("_job"):
        value = value.split(" ", 1)[1]
    return "".join(c for c in value if c.isalnum())


def _plain(rows: list[dict]) -> list[dict]:
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


def _unkeyed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != _KEY} for r in rows]


def num_forget_authors(num_authors: int, percent: int) -> int:
    """Authors in ``forget{percent}``: ``percent``% of ``num_authors`` rounded half up, at least 1."""
    return max(1, int(num_authors * percent / 100 + 0.5))


def generate_benchmark(num_authors: int = 40, qa_per_author: int = 10, seed: int = 0) -> dict[str, list[dict]]:
    """Build every configuration of the generated benchmark, keyed by TOFU's configuration names.

    The rows of ``generate_benchmark_and_key_texts`` with the same arguments, without the key facts.
    """
    return generate_benchmark_and_key_texts(num_authors, qa_per_author, seed)[0]


def generate_benchmark_and_key_texts(num_authors: int, qa_per_author: int, seed: int,
                                     ) -> tuple[dict[str, list[dict]], dict[str, tuple[str, ...]]]:
    """Every configuration of the generated benchmark, and the key fact of each forget row.

    Args:
        num_authors: authors in ``full`` (holdout authors are extra); at least 2 so that retain is
            never empty.
        qa_per_author: question/answer pairs per author, at most ``len(TEMPLATES)``.
        seed: the only source of randomness; the same arguments give the same rows.

    Returns:
        ``{config_name: rows}`` with the columns TOFU has for that configuration, and
        ``{"forget01": key_texts, ...}``: one ``key_text`` per forget row (``key_text``), in order.
    """
    check_range("num_authors", num_authors, low=2)
    check_range("qa_per_author", qa_per_author, low=1, high=len(TEMPLATES))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} must be an integer")
    rng = random.Random(seed)
    n_holdout = num_forget_authors(num_authors, max(FORGET_PERCENTS))
    names: list[str] = []
    while len(names) < num_authors + n_holdout:
        name = _name(rng)
        if name not in names:
            names.append(name)
    per_author = [_author_rows(rng, _author(rng, n), qa_per_author) for n in names]
    authors, holdout = per_author[:num_authors], per_author[num_authors:]
    sets: dict[str, list[dict]] = {"full": _plain([r for a in authors for r in a])}
    keys: dict[str, tuple[str, ...]] = {}
    for pct in FORGET_PERCENTS:
        k = num_forget_authors(num_authors, pct)
        forget = [r for a in authors[num_authors - k:] for r in a]
        sets[f"retain{100 - pct}"] = _plain([r for a in authors[: num_authors - k] for r in a])
        sets[f"forget{pct:02d}"] = _plain(forget)
        sets[f"forget{pct:02d}_perturbed"] = _unkeyed(forget)
        keys[f"forget{pct:02d}"] = tuple(r[_KEY] for r in forget)
        sets[f"holdout{pct:02d}"] = _plain([r for a in holdout[:k] for r in a])
    smallest_retain = num_authors - num_forget_authors(num_authors, max(FORGET_PERCENTS))
    sets["retain_perturbed"] = _unkeyed([r for a in authors[:smallest_retain] for r in a][:RETAIN_EVAL_ROWS])
    sets.update(general_knowledge_sets())
    return sets, keys


# Real general knowledge, playing TOFU's real_authors / world_facts: (question, answer, 3 wrong answers).
_REAL_AUTHORS: tuple[tuple[str, str, tuple[str, str, str]], ...] = (
    ("Who wrote 'Pride and Prejudice'?", "Jane Austen", ("Charlotte Bronte", "Mary Shelley", "George Eliot")),
    ("Who wrote the play 'Romeo and Juliet'?", "William Shakespeare",
     ("Christopher Marlowe", "Ben Jonson", "John Milton")),
    ("Which author wrote the novel '1984'?", "George Orwell", ("Aldous Huxley", "Ray Bradbury", "H.G. Wells")),
    ("Who wrote 'War and Peace'?", "Leo Tolstoy", ("Fyodor Dostoevsky", "Anton Chekhov", "Ivan Turgenev")),
    ("Who wrote 'Don Quixote'?", "Miguel de Cervantes", ("Lope de Vega", "Federico Garcia Lorca", "Jorge Luis Borges")),
    ("Who created the detective Sherlock Holmes?", "Arthur Conan Doyle",
     ("Agatha Christie", "Edgar Allan Poe", "Dorothy L. Sayers")),
    ("Who wrote 'The Old Man and the Sea'?", "Ernest Hemingway",
     ("John Steinbeck", "William Faulkner", "F. Scott Fitzgerald")),
    ("Who wrote 'One Hundred Years of Solitude'?", "Gabriel Garcia Marquez",
     ("Isabel Allende", "Mario Vargas Llosa", "Pablo Neruda")),
    ("Who wrote 'The Great Gatsby'?", "F. Scott Fitzgerald",
     ("Ernest Hemingway", "Sinclair Lewis", "Theodore Dreiser")),
    ("Who wrote 'Crime and Punishment'?", "Fyodor Dostoevsky", ("Leo Tolstoy", "Nikolai Gogol", "Alexander Pushkin")),
    ("Who wrote 'Moby-Dick'?", "Herman Melville", ("Nathaniel Hawthorne", "Mark Twain", "Henry James")),
    ("Who wrote 'The Adventures of Tom Sawyer'?", "Mark Twain", ("Jack London", "Bret Harte", "O. Henry")),
    ("Who wrote 'Frankenstein'?", "Mary Shelley", ("Emily Bronte", "Jane Austen", "Ann Radcliffe")),
    ("Who wrote 'Jane Eyre'?", "Charlotte Bronte", ("Emily Bronte", "Anne Bronte", "Elizabeth Gaskell")),
    ("Who wrote 'Wuthering Heights'?", "Emily Bronte", ("Charlotte Bronte", "George Eliot", "Thomas Hardy")),
    ("Who wrote 'Great Expectations'?", "Charles Dickens", ("William Thackeray", "Thomas Hardy", "Anthony Trollope")),
    ("Who wrote 'The Divine Comedy'?", "Dante Alighieri", ("Giovanni Boccaccio", "Petrarch", "Virgil")),
    ("Who is credited with writing 'The Odyssey'?", "Homer", ("Virgil", "Sophocles", "Ovid")),
    ("Who wrote 'Things Fall Apart'?", "Chinua Achebe", ("Wole Soyinka", "Ngugi wa Thiong'o", "Ben Okri")),
    ("Who wrote 'The Lord of the Rings'?", "J.R.R. Tolkien", ("C.S. Lewis", "Terry Pratchett", "Philip Pullman")),
    ("Who wrote 'Harry Potter and the Philosopher's Stone'?", "J.K. Rowling",
     ("Roald Dahl", "Philip Pullman", "Enid Blyton")),
    ("Who wrote 'To Kill a Mockingbird'?", "Harper Lee", ("Truman Capote", "Flannery O'Connor", "Carson McCullers")),
    ("Who wrote 'The Metamorphosis'?", "Franz Kafka", ("Thomas Mann", "Hermann Hesse", "Robert Musil")),
    ("Who wrote 'Les Miserables'?", "Victor Hugo", ("Alexandre Dumas", "Gustave Flaubert", "Emile Zola")),
    ("Who wrote 'Madame Bovary'?", "Gustave Flaubert", ("Honore de Balzac", "Victor Hugo", "Stendhal")),
    ("Who wrote 'Norwegian Wood'?", "Haruki Murakami", ("Yukio Mishima", "Kazuo Ishiguro", "Kenzaburo Oe")),
    ("Who wrote the poem 'The Raven'?", "Edgar Allan Poe", ("Walt Whitman", "Emily Dickinson", "Robert Frost")),
    ("Who wrote 'Leaves of Grass'?", "Walt Whitman", ("Emily Dickinson", "Robert Frost", "Henry Longfellow")),
    ("Who wrote 'Mrs Dalloway'?", "Virginia Woolf", ("James Joyce", "E.M. Forster", "D.H. Lawrence")),
    ("Who wrote 'Ulysses'?", "James Joyce", ("Samuel Beckett", "W.B. Yeats", "Oscar Wilde")),
)
_WORLD_FACTS: tuple[tuple[str, str, tuple[str, str, str]], ...] = (
    ("What is the capital of France?", "Paris", ("Lyon", "Marseille", "Brussels")),
    ("What is the capital of Japan?", "Tokyo", ("Osaka", "Kyoto", "Seoul")),
    ("What is the capital of Australia?", "Canberra", ("Sydney", "Melbourne", "Perth")),
    ("What is the capital of Canada?", "Ottawa", ("Toronto", "Montreal", "Vancouver")),
    ("What is the capital of Italy?", "Rome", ("Milan", "Naples", "Florence")),
    ("What is the capital of Egypt?", "Cairo", ("Alexandria", "Giza", "Luxor")),
    ("What is the capital of Brazil?", "Brasilia", ("Rio de Janeiro", "Sao Paulo", "Salvador")),
    ("What is the capital of Kenya?", "Nairobi", ("Mombasa", "Kampala", "Addis Ababa")),
    ("Which river is the longest in the world?", "Nile", ("Amazon", "Yangtze", "Mississippi")),
    ("What is the largest ocean on Earth?", "Pacific Ocean", ("Atlantic Ocean", "Indian Ocean", "Arctic Ocean")),
    ("What is the tallest mountain in the world?", "Mount Everest", ("K2", "Kangchenjunga", "Mont Blanc")),
    ("Which planet is known as the Red Planet?", "Mars", ("Venus", "Jupiter", "Mercury")),
    ("What is the largest planet in the solar system?", "Jupiter", ("Saturn", "Neptune", "Earth")),
    ("What is the chemical symbol for gold?", "Au", ("Ag", "Fe", "Pb")),
    ("What is the chemical symbol for sodium?", "Na", ("K", "Ca", "Mg")),
    ("How many continents are there on Earth?", "Seven", ("Five", "Six", "Eight")),
    ("What is the largest desert in Africa?", "Sahara", ("Kalahari", "Namib", "Gobi")),
    ("In which country are the pyramids of Giza?", "Egypt", ("Sudan", "Mexico", "Peru")),
    ("Which country is known as the Land of the Rising Sun?", "Japan", ("China", "Korea", "Thailand")),
    ("At how many degrees Celsius does water freeze?", "0", ("100", "4", "32")),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci", ("Michelangelo", "Raphael", "Rembrandt")),
    ("What is the largest country by area?", "Russia", ("Canada", "China", "United States")),
    ("In which city is the Statue of Liberty?", "New York", ("Boston", "Chicago", "Washington")),
    ("What language is spoken in Brazil?", "Portuguese", ("Spanish", "French", "Italian")),
    ("What is the currency of Japan?", "Yen", ("Won", "Yuan", "Ringgit")),
    ("Which gas do plants absorb from the air?", "Carbon dioxide", ("Oxygen", "Nitrogen", "Hydrogen")),
    ("What is the hardest natural substance?", "Diamond", ("Quartz", "Granite", "Iron")),
    ("How many days are there in a leap year?", "366", ("365", "364", "360")),
    ("Which element has the atomic number 1?", "Hydrogen", ("Helium", "Oxygen", "Carbon")),
    ("What is the smallest prime number?", "2", ("1", "3", "0")),
)


def _knowledge_rows(facts: tuple[tuple[str, str, tuple[str, str, str]], ...]) -> tuple[list[dict], list[dict]]:
    """(plain rows with TOFU's option1..4 columns, ``_perturbed`` rows); the answer's slot rotates."""
    plain, perturbed = [], []
    for i, (q, a, wrong) in enumerate(facts):
        options = list(wrong)
        options.insert(i % 4, a)
        plain.append({"question": q, **{f"option{j + 1}": o for j, o in enumerate(options)}, "answer": a})
        perturbed.append({"question": q, "answer": a, "perturbed_answer": list(wrong)})
    return plain, perturbed


def general_knowledge_sets() -> dict[str, list[dict]]:
    """The fixed ``real_authors``, ``world_facts`` and their ``_perturbed`` configurations."""
    out: dict[str, list[dict]] = {}
    for name, facts in (("real_authors", _REAL_AUTHORS), ("world_facts", _WORLD_FACTS)):
        out[name], out[f"{name}_perturbed"] = _knowledge_rows(facts)
    return out


def general_knowledge_rows(sets: dict[str, list[dict]]) -> list[dict]:
    """The ``real_authors`` + ``world_facts`` question/answer rows: the tiny models' "pretraining".

    Raises:
        ConfigError: if ``sets`` lacks one of the two configurations.
    """
    rows: list[dict] = []
    for name in ("real_authors", "world_facts"):
        if name not in sets:
            raise ConfigError(f"general knowledge needs configuration {name!r}; got {sorted(sets)}")
        rows += [{"question": r["question"], "answer": r["answer"]} for r in sets[name]]
    return rows
