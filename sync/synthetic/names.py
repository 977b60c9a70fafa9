"""Names as an Australian clinic's patient list has them: mostly Anglo, plenty that are not.

Each pool keeps a culture's given names and surnames together so a record reads as one person.
An entry written "display|ascii" carries the ASCII spelling people use in their email address;
the others are folded automatically.
"""

from __future__ import annotations

import random
import unicodedata
from bisect import bisect
from dataclasses import dataclass
from itertools import accumulate


@dataclass(frozen=True)
class Name:
    display: str
    ascii: str


@dataclass(frozen=True)
class NamePool:
    weight: float
    female: tuple[Name, ...]
    male: tuple[Name, ...]
    surnames: tuple[Name, ...]
    # Share of people in this pool who go by an English given name at the clinic.
    english_preferred_share: float = 0.0


# Letters NFKD leaves alone, spelled the way their owners type them in email addresses.
_UNDECOMPOSABLE = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
                                 "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE"})


def ascii_fold(text: str) -> str:
    """"Łukasz Müller" -> "Lukasz Muller"; characters with no Latin form are dropped."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_UNDECOMPOSABLE))
    return "".join(char for char in decomposed if char.isascii() and not unicodedata.combining(char))


def _names(entries: str) -> tuple[Name, ...]:
    names = []
    for entry in entries.split(","):
        display, _, spelled = entry.strip().partition("|")
        names.append(Name(display, spelled or ascii_fold(display)))
    return tuple(names)


POOLS: tuple[NamePool, ...] = (
    NamePool(
        0.50,
        _names("Olivia, Charlotte, Amelia, Isla, Mia, Ava, Grace, Chloe, Emily, Sophie, Matilda, "
               "Ruby, Ella, Harper, Sarah, Jessica, Emma, Hannah, Lily, Zoe, Kate, Rebecca, "
               "Michelle, Karen, Susan, Margaret, Helen, Deborah, Jennifer, Lisa, Nicole, Megan, "
               "Tayla, Zoë, Chloé, Renée"),
        _names("Jack, Oliver, William, Noah, Thomas, James, Lachlan, Liam, Ethan, Lucas, Henry, "
               "Charlie, Cooper, Riley, Max, Benjamin, Daniel, Matthew, Andrew, David, Michael, "
               "Peter, John, Robert, Mark, Stephen, Paul, Craig, Brendan, Nathan, Josh"),
        _names("Smith, Jones, Williams, Brown, Wilson, Taylor, Johnson, White, Martin, Anderson, "
               "Thompson, Walker, Harris, Ryan, Robinson, Kelly, King, Davis, Wright, Evans, "
               "Roberts, Green, Hall, Wood, Jackson, Clarke, Hughes, Edwards, Lee, O'Brien, "
               "O'Connor, O'Neill, McDonald, MacKenzie, McLeod, Fitzgerald, Smith-Jones, "
               "Harper-Lee, D'Souza, St. John"),
    ),
    NamePool(
        0.04,
        _names("Siobhán, Aoife, Niamh, Róisín, Saoirse, Órla, Caoimhe"),
        _names("Seán, Ciarán, Pádraig, Eoin, Cathal, Darragh, Tadhg"),
        _names("Ó Súilleabháin, Ní Bhriain, O'Sullivan, Murphy, Walsh, Byrne, Ó Conaill, Kennedy"),
    ),
    NamePool(
        0.10,
        _names("Zoë, Chloé, Małgorzata, Ángela, Noémie, Björk, Agnieszka, Eleni, Dimitra, "
               "Giulia, Sofía, Inès, Maja, Ingrid, Françoise"),
        _names("José, Łukasz, Søren, Björn, François, Jürgen, Mateo, Andrés, Joël, Giorgos, "
               "Konstantinos, Marco, Jiří, Mikołaj, Ørjan"),
        _names("Müller, Schröder, García, Fernández, Kowalski, Wiśniewski, Jørgensen, Lefèvre, "
               "Rossi, Bianchi, Esposito, Papadopoulos, Dubois, Nowak, Søndergaard, Núñez, "
               "van der Berg, De Luca, Dvořák, Öztürk, Çelik"),
    ),
    NamePool(
        0.07,
        _names("Hương, Linh, Thảo, Phương, Ngọc, Trang, Mai, Anh"),
        _names("Minh, Tuấn, Dũng, Huy, Khánh, Quang, Đức, Bảo"),
        _names("Nguyễn, Trần, Lê, Phạm, Hoàng, Võ, Đặng, Bùi, Nguyen, Tran, Le, Pham"),
        english_preferred_share=0.3,
    ),
    NamePool(
        0.03,
        _names("芳|fang, 娜|na, 敏|min, 静|jing, 丽|li, 秀英|xiuying"),
        _names("伟|wei, 磊|lei, 强|qiang, 军|jun, 洋|yang, 志明|zhiming"),
        _names("王|wang, 李|li, 张|zhang, 刘|liu, 陈|chen, 杨|yang, 黄|huang"),
        english_preferred_share=0.4,
    ),
    NamePool(
        0.06,
        _names("Wei, Jing, Xin, Hui, Yan, Mei, Ling"),
        _names("Jun, Hao, Ming, Lei, Jian, Kai, Yong"),
        _names("Zhang, Chen, Wang, Li, Liu, Wong, Lim, Chan, Huang, Zhou, Ng, Tan"),
        english_preferred_share=0.4,
    ),
    NamePool(
        0.08,
        _names("Priya, Ananya, Aditi, Kavya, Gurpreet, Harpreet, Deepika, Sneha"),
        _names("Arjun, Rohan, Aarav, Vikram, Rahul, Sanjay, Manpreet, Karthik"),
        _names("Sharma, Patel, Singh, Kumar, Gupta, Reddy, Iyer, Kaur, Nair, Joshi"),
    ),
    NamePool(
        0.05,
        _names("Fatima, Layla, Mariam, Noor, Yasmin, Zeynep"),
        _names("Mohammed, Ahmed, Omar, Karim, Yusuf, Ali"),
        _names("Haddad, Khoury, Hassan, Nasser, Al-Amin, El-Masri, Abdullah"),
    ),
    NamePool(
        0.04,
        _names("Yūki|yuki, Sakura, Hana, Ji-woo, Seo-yeon, Aroha, Mere, Losana"),
        _names("Haruto, Kenji, Shōta|shota, Min-jun, Ji-ho, Tāne|tane, Sione, Wiremu"),
        _names("Satō|sato, Suzuki, Takahashi, Kim, Park, Choi, Ngata, Tuilagi, Fifita, Parata"),
    ),
)
_POOL_CUMULATIVE = tuple(accumulate(pool.weight for pool in POOLS))
_ENGLISH_FEMALE = POOLS[0].female[:20]
_ENGLISH_MALE = POOLS[0].male[:20]
_NICKNAMES = {"William": "Will", "Matthew": "Matt", "Benjamin": "Ben", "Michael": "Mike",
              "Rebecca": "Bec", "Jessica": "Jess", "Margaret": "Maggie", "Thomas": "Tom",
              "Daniel": "Dan", "Katherine": "Kate", "Robert": "Bob", "Samantha": "Sam"}


@dataclass(frozen=True)
class PersonName:
    first: Name
    last: Name
    preferred_first: str
    female: bool


def _pick(rng: random.Random, names: tuple[Name, ...]) -> Name:
    return names[int(rng.random() * len(names))]


def person_name(rng: random.Random, *, female: bool) -> PersonName:
    """A given name and surname from one cultural pool, with the name they go by (or "")."""
    pool = POOLS[bisect(_POOL_CUMULATIVE, rng.random() * _POOL_CUMULATIVE[-1])]
    first = _pick(rng, pool.female if female else pool.male)
    last = _pick(rng, pool.surnames)
    preferred = ""
    if rng.random() < pool.english_preferred_share:
        preferred = _pick(rng, _ENGLISH_FEMALE if female else _ENGLISH_MALE).display
    elif first.display in _NICKNAMES and rng.random() < 0.5:
        preferred = _NICKNAMES[first.display]
    return PersonName(first, last, preferred, female)
