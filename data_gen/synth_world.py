"""A deterministic synthetic encyclopedia in the KILT knowledge-source schema (the embedded default data).

``longtrace data synth-world --pages N --seed S`` writes N KILT records (one JSON object per line) describing a
fictional world: countries, cities, universities, companies (record labels and film companies), recording
studios, people (singers, guitarists, drummers, producers, songwriters, actors, directors), bands, albums,
songs and films. Typed relations (born in, member of, produced by, recorded at, located in ...) are rendered
as prose with anchors, in both directions (a city page lists the people born there), so the hyperlink graph is
well connected and every hop of a walk has a known relation.

Distractors need something to confuse, so the world contains deliberately confusable pages:
  * namesakes: two people with the same name ("Name (drummer)", "Name (producer)") plus a disambiguation page;
  * near-names: a second producer whose surname differs by a letter or two, from the same city, born a year
    or two apart, producing albums of their own;
  * near-miss albums: a sibling album by the same act with a similar title, released a year later;
  * twin-named cities: two cities of the same name in different countries ("Name, Country").

Each record carries the standard KILT fields plus ``synthetic`` = {"type", "name", "attrs", "relations":
[{"rel", "target"}], "confusable_with": [titles]}: the facts behind the prose, which the template question
writer uses. Pages also have "See also" and "References" sections, so the KILT clean-up has work to do.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

# ----------------------------------------------------------------------------------------------- vocabulary
GIVEN = ("Lars Mira Tomas Ines Edvin Sanna Oskar Vera Anton Liv Henrik Alma Jonas Freja Viktor Maja Emil Nora "
         "Felix Ida Aron Elin Kasper Tuva Mattias Selma Isak Hedda Ruben Signe Johan Astrid Nils Elsa Petra "
         "Daniel Marta Leon Clara Hugo Lucia Mateo Greta Bruno Ada Milan Iris Adrian Rosa Tobias Leah Simon "
         "Nadia Paolo Irene Dario Elena Marek Zofia Tamsin Orla").split()
SUR_A = ("Ek Lind Berg Holm Sand Strand Dahl Fager Ny Ros Sjö Lund Wall Ahl Hed Fors Stein Krog Varg Eng Lov "
         "Borg Brink Gran Hag Kvist Mal Norr Ost Rask Sol Tall Ulv Vik Ask Bjor Fal Grim Hart").replace("ö", "o").split()
SUR_B = "holm berg ström lund gren qvist dahl man sson vik stad feldt bäck sten mark hagen rud by ness dal".replace(
    "ö", "o").replace("ä", "a").split()
PLACE_A = ("Var Ost Bel Kor Mar Tal Sel Dun Bran Hal Nor Eld Vin Ros Gal Tor Ard Lun Ves Cal Mor Fen Kel Ran Sav "
           "Tir Ul Yor Zan Quen Bar Del Fal Gor Hel Ist Jar Lor Mel Pel").split()
PLACE_M = ["", "", "en", "a", "ing", "or", "el", "is", "an", "u"]
PLACE_B = ("holm stad vik burg ford mouth haven dale port field bridge mere wick ton ley gate mont ville by ness "
           "sund hamn borough crest").split()
COUNTRY_B = "ia land aria ovia esia stan mark onia".split()
ADJ = ("Silver Hollow Quiet Electric Northern Broken Golden Velvet Paper Crimson Distant Frozen Burning Glass "
       "Midnight Wild Faded Iron Secret Last Hidden Little Bright Lonely Open Restless Painted Blue Scarlet Amber "
       "Gentle Savage Lucky Endless Empty Rising Falling Sleeping Wandering Wooden Copper Neon Pale Heavy Tender "
       "Violet Lost Strange Sacred Bitter Sweet Cold Warm Hungry Silent Shining Ancient Modern Holy Crooked "
       "Drifting Burning").split()
NOUN = ("Harbour River Lantern Garden Mirror Signal Orchard Tide Echo Compass Engine Meadow Citadel Horizon "
        "Window Ember Harvest Parade Station Voyage Circle Canyon Forest Island Temple Archive Cathedral Theatre "
        "Machine Lighthouse Valley Ocean Desert Winter Summer Autumn Spring Shadow Thunder Feather Anchor Bridge "
        "Crown Arrow Satellite Monument Carousel Telegraph Fountain Labyrinth Pilgrim Sparrow Falcon Wolf Tiger "
        "Raven Comet Planet Mountain Ribbon Paradise Kingdom Street Avenue Highway Empire Republic").split()
GENRES = ("rock", "jazz", "folk", "synth-pop", "indie pop", "electronic", "blues", "post-punk", "soul", "country",
          "hip hop", "ambient", "hard rock", "dream pop", "art rock")
MUSICIAN_ROLES = ("singer", "guitarist", "drummer", "bassist", "keyboardist")
CUT_FILLER = ("Notes", "Further reading", "External links")


@dataclass
class Entity:
    idx: int
    type: str
    name: str
    title: str
    attrs: dict = field(default_factory=dict)
    rels: list = field(default_factory=list)  # (relation, target idx), canonical direction
    inv: list = field(default_factory=list)  # (relation, source idx): others pointing here
    confusable: list = field(default_factory=list)  # idx of pages made to be confused with this one


class _Para:
    """One paragraph under construction: text plus anchors with exact character offsets."""

    def __init__(self):
        self.parts: list[str] = []
        self.len = 0
        self.anchors: list[tuple[int, int, str, int]] = []  # start, end, text, target idx

    def add(self, text: str) -> "_Para":
        self.parts.append(text)
        self.len += len(text)
        return self

    def link(self, world: "World", idx: int, text: str | None = None) -> "_Para":
        text = text or world.ents[idx].name
        self.anchors.append((self.len, self.len + len(text), text, idx))
        return self.add(text)

    def links(self, world: "World", idxs: list[int]) -> "_Para":
        for i, idx in enumerate(idxs):
            if i:
                self.add(" and " if i == len(idxs) - 1 else ", ")
            self.link(world, idx)
        return self

    def text(self) -> str:
        return "".join(self.parts)


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def decade(year: int) -> str:
    """1973 -> 'the early 1970s' (descriptions that do not give the exact year)."""
    part = year % 10
    third = "early" if part < 4 else ("mid" if part < 7 else "late")
    return f"the {third} {year // 10 * 10}s"


def century(year: int) -> str:
    c = year // 100 + 1
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(c % 10 if c % 100 not in (11, 12, 13) else 0, "th")
    return f"the {c}{suffix} century"


class World:
    def __init__(self, pages: int, seed: int):
        self.rng = random.Random(f"synth-world:{seed}")
        self.seed = seed
        self.target = max(pages, 60)
        self.ents: list[Entity] = []
        self.titles: set[str] = set()
        self.names: dict[str, set[str]] = {}

    # ---------------------------------------------------------------------------------------- construction
    def _title(self, name: str, qualifiers: list[str]) -> str:
        if name not in self.titles:
            return name
        for q in qualifiers:
            t = f"{name} ({q})"
            if t not in self.titles:
                return t
        n = 2
        while f"{name} ({qualifiers[-1]} {n})" in self.titles:
            n += 1
        return f"{name} ({qualifiers[-1]} {n})"

    def add(self, type_: str, name: str, qualifiers: list[str], **attrs) -> int:
        title = self._title(name, qualifiers)
        self.titles.add(title)
        e = Entity(len(self.ents), type_, name, title, attrs)
        self.ents.append(e)
        return e.idx

    def rel(self, src: int, relation: str, dst: int) -> None:
        self.ents[src].rels.append((relation, dst))
        self.ents[dst].inv.append((relation, src))

    def _unique(self, kind: str, make: Callable[[], str], tries: int = 40) -> str:
        used = self.names.setdefault(kind, set())
        for _ in range(tries):
            n = make()
            if n not in used:
                used.add(n)
                return n
        n = f"{make()} {self.rng.choice(NOUN)}"
        used.add(n)
        return n

    def person_name(self) -> str:
        r = self.rng
        return self._unique("person", lambda: f"{r.choice(GIVEN)} {r.choice(SUR_A)}{r.choice(SUR_B)}")

    def place_name(self) -> str:
        r = self.rng
        return self._unique("place", lambda: f"{r.choice(PLACE_A)}{r.choice(PLACE_M)}{r.choice(PLACE_B)}")

    def country_name(self) -> str:
        r = self.rng
        return self._unique("country", lambda: f"{r.choice(PLACE_A)}{r.choice(PLACE_M)}{r.choice(COUNTRY_B)}")

    def phrase(self, kind: str) -> str:
        r = self.rng
        forms = (lambda: f"{r.choice(ADJ)} {r.choice(NOUN)}", lambda: f"{r.choice(NOUN)} of the {r.choice(NOUN)}",
                 lambda: f"The {r.choice(ADJ)} {r.choice(NOUN)}", lambda: f"{_plural(r.choice(NOUN))} and {_plural(r.choice(NOUN))}")
        return self._unique(kind, lambda: r.choice(forms)())

    def build(self) -> "World":
        r, n = self.rng, self.target
        count = lambda share, low: max(low, int(n * share))  # noqa: E731
        countries = [self.add("country", self.country_name(), ["country"], population_m=r.randint(2, 90))
                     for _ in range(count(0.004, 3))]
        cities = []
        for _ in range(count(0.06, 8)):
            c = self.add("city", self.place_name(), ["city"], founded=r.randint(1050, 1890),
                         population=r.randint(8, 900) * 1000)
            self.rel(c, "in_country", r.choice(countries))
            cities.append(c)
        for i in range(max(1, len(cities) // 20)):  # twin-named cities in two countries
            orig = self.ents[cities[i * 7 % len(cities)]]
            other_country = r.choice([x for x in countries if x != orig.rels[0][1]])
            orig_country = self.ents[orig.rels[0][1]].name
            if orig.title == orig.name:
                self.titles.discard(orig.title)
                orig.title = f"{orig.name}, {orig_country}"
                self.titles.add(orig.title)
            c = self.add("city", orig.name, [self.ents[other_country].name], founded=orig.attrs["founded"] + r.randint(20, 200),
                         population=r.randint(8, 300) * 1000)
            self.ents[c].title = f"{orig.name}, {self.ents[other_country].name}"
            self.titles.add(self.ents[c].title)
            self.rel(c, "in_country", other_country)
            orig.confusable.append(c)
            self.ents[c].confusable.append(orig.idx)
            cities.append(c)
        for c in cities:
            if r.random() < 0.3:
                self.rel(c, "twinned_with", r.choice([x for x in cities if x != c]))
        univs = []
        for _ in range(count(0.02, 3)):
            city = r.choice(cities)
            u = self.add("university", f"University of {self.ents[city].name}", ["university"],
                         founded=r.randint(1400, 1970))
            self.rel(u, "located_in", city)
            univs.append(u)

        people: dict[str, list[int]] = {}

        def new_person(role: str, name: str | None = None, born: int | None = None, city: int | None = None) -> int:
            name = name or self.person_name()
            p = self.add("person", name, [role, f"{role}, born {born or 0}"], occupation=role,
                         born=born or r.randint(1935, 1998))
            self.ents[p].title = self.ents[p].title.replace(", born 0", f", born {self.ents[p].attrs['born']}")
            self.rel(p, "born_in", city if city is not None else r.choice(cities))
            if r.random() < 0.6:
                self.rel(p, "studied_at", r.choice(univs))
            people.setdefault(role, []).append(p)
            return p

        n_people = count(0.33, 20)
        roles = MUSICIAN_ROLES * 3 + ("producer", "producer", "songwriter", "actor", "actor", "director")
        for _ in range(n_people):
            new_person(r.choice(roles))
        for role in ("producer", "actor", "director", "songwriter", *MUSICIAN_ROLES):
            while len(people.get(role, [])) < 3:
                new_person(role)

        # near-name producers: same given name, surname off by a little, same city, born a year or two apart
        for p in list(people["producer"])[: max(1, len(people["producer"]) // 8)]:
            e = self.ents[p]
            given, surname = e.name.split(" ", 1)
            variant = surname[:-1] + ("e" if surname[-1] != "e" else "a") if len(surname) > 4 else surname + "s"
            twin = new_person("producer", self._unique("person", lambda: f"{given} {variant}"),
                              e.attrs["born"] + r.choice((-2, -1, 1, 2)), e.rels[0][1])
            e.confusable.append(twin)
            self.ents[twin].confusable.append(p)
        # namesakes: the same name, another occupation; the plain name becomes a disambiguation page
        namesakes = []
        musicians = [p for role in MUSICIAN_ROLES for p in people[role]]
        for p in r.sample(musicians, max(1, len(musicians) // 20)):
            e = self.ents[p]
            other_role = r.choice([x for x in ("producer", "actor", "director", "songwriter") if x != e.attrs["occupation"]])
            if e.title == e.name:
                self.titles.discard(e.title)
                e.title = f"{e.name} ({e.attrs['occupation']})"
                self.titles.add(e.title)
            twin = new_person(other_role, e.name)
            t = self.ents[twin]
            self.titles.discard(t.title)
            t.title = self._title(f"{e.name} ({other_role})", [f"{other_role}, born {t.attrs['born']}"])
            self.titles.add(t.title)
            e.confusable.append(twin)
            self.ents[twin].confusable.append(p)
            namesakes.append((e.name, [p, twin]))

        companies = {"label": [], "film company": []}
        for _ in range(count(0.035, 4)):
            kind = "label" if r.random() < 0.65 else "film company"
            word = r.choice(("Records", "Music", "Recordings", "Sound")) if kind == "label" else r.choice(("Pictures", "Films", "Studios Ltd"))
            c = self.add("company", f"{r.choice(ADJ)} {r.choice(NOUN)} {word}", ["company", "label"], kind=kind,
                         founded=r.randint(1920, 2012))
            self.rel(c, "headquartered_in", r.choice(cities))
            self.rel(c, "founded_by", r.choice(people["producer"] + people["director"]))
            companies[kind].append(c)
        for kind in companies:
            if not companies[kind]:
                c = self.add("company", f"{r.choice(NOUN)} {'Records' if kind == 'label' else 'Pictures'}", ["company"],
                             kind=kind, founded=r.randint(1920, 2012))
                self.rel(c, "headquartered_in", r.choice(cities))
                self.rel(c, "founded_by", r.choice(people["producer"]))
                companies[kind].append(c)
        studios = []
        for _ in range(count(0.035, 4)):
            city = r.choice(cities)
            s = self.add("studio", f"{r.choice(NOUN)} {r.choice(('Studios', 'Sound Studio', 'Recording Studio'))}",
                         ["studio", f"{self.ents[city].name} studio"], founded=r.randint(1950, 2010))
            self.rel(s, "located_in", city)
            self.rel(s, "founded_by", r.choice(people["producer"]))
            if r.random() < 0.4:
                self.rel(s, "owned_by", r.choice(companies["label"]))
            studios.append(s)

        bands = []
        for _ in range(count(0.08, 5)):
            b = self.add("band", self.phrase("band"), ["band"], genre=r.choice(GENRES), formed=r.randint(1960, 2015))
            self.rel(b, "formed_in", r.choice(cities))
            self.rel(b, "signed_to", r.choice(companies["label"]))
            for m in r.sample(musicians, min(len(musicians), r.randint(3, 5))):
                self.rel(m, "member_of", b)
            bands.append(b)
        acts = bands + [p for p in people["singer"]][: len(bands) // 2]

        albums = []

        def new_album() -> int:
            artist = r.choice(acts)
            a_e = self.ents[artist]
            start = a_e.attrs.get("formed") or a_e.attrs.get("born", 1960) + 20
            year = min(2024, start + r.randint(0, 25))
            a = self.add("album", self.phrase("album"), ["album", f"{a_e.name} album"],
                         released=year, genre=a_e.attrs.get("genre") or r.choice(GENRES))
            self.rel(a, "artist", artist)
            self.rel(a, "produced_by", r.choice(people["producer"]))
            self.rel(a, "recorded_at", r.choice(studios))
            self.rel(a, "label", r.choice(companies["label"]))
            albums.append(a)
            return a

        for _ in range(count(0.17, 8)):
            new_album()
        for a in r.sample(albums, max(1, len(albums) // 10)):  # near-miss sibling albums
            e = self.ents[a]
            name = self._unique("album", lambda: r.choice((f"{e.name} II", f"Return to {e.name}", f"{e.name} Revisited")))
            sib = self.add("album", name, ["album"], released=min(2025, e.attrs["released"] + 1), genre=e.attrs["genre"])
            for rel_, dst in list(e.rels):
                if rel_ == "recorded_at":
                    dst = r.choice(studios)
                self.rel(sib, rel_, dst)
            e.confusable.append(sib)
            self.ents[sib].confusable.append(a)
            albums.append(sib)

        writers = people["songwriter"] + people["singer"] + people["guitarist"]
        for _ in range(count(0.1, 5)):
            alb = r.choice(albums)
            s = self.add("song", self.phrase("song"), ["song", f"{self.ents[alb].name} song"],
                         released=self.ents[alb].attrs["released"], length=f"{r.randint(2, 6)}:{r.randint(0, 59):02d}")
            self.rel(s, "on_album", alb)
            self.rel(s, "written_by", r.choice(writers))

        for _ in range(count(0.06, 3)):
            f = self.add("film", self.phrase("film"), ["film"], released=r.randint(1965, 2024),
                         runtime=r.randint(80, 170))
            self.rel(f, "directed_by", r.choice(people["director"]))
            for actor in r.sample(people["actor"], min(2, len(people["actor"]))):
                self.rel(f, "starring", actor)
            self.rel(f, "produced_by", r.choice(companies["film company"]))
            self.rel(f, "filmed_in", r.choice(cities))
            if r.random() < 0.5:
                self.rel(f, "soundtrack_by", r.choice(bands))

        while len(self.ents) + len(namesakes) < n:  # top up to the requested size
            new_person(r.choice(roles)) if r.random() < 0.6 else new_album()
        for name, members in namesakes:
            self.add("disambiguation", name, ["disambiguation"], members=members)
            d = self.ents[-1]
            if d.title != name:  # the plain name is taken (rare): keep the standard suffix
                self.titles.discard(d.title)
                d.title = self._title(f"{name} (disambiguation)", ["disambiguation"])
                self.titles.add(d.title)
        return self


# ------------------------------------------------------------------------------------------------ rendering
INVERSE_HEADINGS = {
    "in_country": ("Cities", "Cities in {name} include "),
    "twinned_with": ("Twin towns", "{name} is also twinned with "),
    "located_in": ("Institutions", "Institutions located in {name} include "),
    "headquartered_in": ("Economy", "Companies based in {name} include "),
    "born_in": ("Notable people", "Notable people born in {name} include "),
    "studied_at": ("Alumni", "Alumni of the university include "),
    "member_of": ("Members", "Members of {name} have included "),
    "formed_in": ("Music", "Bands formed in {name} include "),
    "signed_to": ("Artists", "Acts signed to {name} have included "),
    "artist": ("Discography", "Albums by {name} include "),
    "produced_by": ("Production credits", "{short} has produced "),
    "recorded_at": ("Recordings", "Albums recorded at {name} include "),
    "label": ("Releases", "Albums released by {name} include "),
    "on_album": ("Singles", "Songs from the album include "),
    "written_by": ("Songwriting", "Songs written by {short} include "),
    "directed_by": ("Filmography", "Films directed by {short} include "),
    "starring": ("Film roles", "{short} has appeared in "),
    "filmed_in": ("In film", "Films shot in {name} include "),
    "soundtrack_by": ("Soundtracks", "{name} wrote music for the films "),
    "founded_by": ("Ventures", "{short} founded "),
    "owned_by": ("Facilities", "{name} owns "),
}
MAX_LIST = 12


class Renderer:
    def __init__(self, world: World):
        self.w = world

    def _targets(self, e: Entity, relation: str) -> list[int]:
        return [d for r_, d in e.rels if r_ == relation]

    def _short(self, e: Entity) -> str:
        return e.name.split(" ", 1)[1] if e.type == "person" and " " in e.name else e.name

    def intro(self, e: Entity, rng: random.Random) -> list[_Para]:
        w, a, p = self.w, e.attrs, _Para()
        t = lambda rel: self._targets(e, rel)  # noqa: E731
        if e.type == "country":
            p.add(f"{e.name} is a country with a population of about {a['population_m']} million people.")
        elif e.type == "city":
            p.add(f"{e.name} is a city in ").link(w, t("in_country")[0]).add(
                f". It was founded in {a['founded']} and has a population of {a['population']:,}.")
            if t("twinned_with"):
                p.add(" The city is twinned with ").link(w, t("twinned_with")[0], w.ents[t("twinned_with")[0]].name).add(".")
        elif e.type == "university":
            p.add(f"The {e.name} is a public research university in ").link(w, t("located_in")[0]).add(
                f", founded in {a['founded']}.")
        elif e.type == "company":
            what = "an independent record label" if a["kind"] == "label" else "a film production company"
            p.add(f"{e.name} is {what} based in ").link(w, t("headquartered_in")[0]).add(
                f". It was founded in {a['founded']} by ").link(w, t("founded_by")[0]).add(".")
        elif e.type == "studio":
            p.add(f"{e.name} is a recording studio in ").link(w, t("located_in")[0]).add(
                f", established in {a['founded']} by the producer ").link(w, t("founded_by")[0]).add(".")
            if t("owned_by"):
                p.add(" Since the 2000s it has been owned by ").link(w, t("owned_by")[0]).add(".")
        elif e.type == "person":
            p.add(f"{e.name} (born {a['born']}) is a {a['occupation']} from ").link(w, t("born_in")[0]).add(".")
            if t("studied_at"):
                p.add(f" {self._short(e)} studied at the ").link(w, t("studied_at")[0]).add(".")
            if t("member_of"):
                p.add(f" {self._short(e)} is best known as a member of ").links(w, t("member_of")).add(".")
                mates = [m for r_, m in w.ents[t("member_of")[0]].inv if r_ == "member_of" and m != e.idx][:2]
                if mates:
                    p.add(" Bandmates have included ").links(w, mates).add(".")
        elif e.type == "band":
            p.add(f"{e.name} is a {a['genre']} band formed in ").link(w, t("formed_in")[0]).add(
                f" in {a['formed']}. The band is signed to ").link(w, t("signed_to")[0]).add(".")
        elif e.type == "album":
            p.add(f"{e.name} is a {a['genre']} album by ").link(w, t("artist")[0]).add(
                f", released in {a['released']} on ").link(w, t("label")[0]).add(". It was produced by ").link(
                w, t("produced_by")[0]).add(" and recorded at ").link(w, t("recorded_at")[0]).add(".")
        elif e.type == "song":
            alb = w.ents[t("on_album")[0]]
            p.add(f"\"{e.name}\" is a song written by ").link(w, t("written_by")[0]).add(". It appears on the album ").link(
                w, alb.idx).add(f" ({alb.attrs['released']}) by ").link(w, alb.rels[0][1]).add(
                ", produced by ").link(w, self._targets(alb, "produced_by")[0]).add(f". The song runs {e.attrs['length']}.")
        elif e.type == "film":
            p.add(f"{e.name} is a {a['released']} film directed by ").link(w, t("directed_by")[0]).add(
                " and starring ").links(w, t("starring")).add(". It was produced by ").link(w, t("produced_by")[0]).add(
                " and shot in ").link(w, t("filmed_in")[0]).add(f". Its running time is {a['runtime']} minutes.")
            if t("soundtrack_by"):
                p.add(" The soundtrack was written by ").link(w, t("soundtrack_by")[0]).add(".")
        elif e.type == "disambiguation":
            p.add(f"{e.name} may refer to:")
            paras = [p]
            for m in a["members"]:
                me = w.ents[m]
                paras.append(_Para().add("BULLET::::- ").link(w, m, me.title).add(
                    f" (born {me.attrs['born']}), {me.attrs['occupation']}"))
            return paras
        extra = _Para()
        extra.add(self._filler(e, rng))
        return [p, extra]

    def _filler(self, e: Entity, rng: random.Random) -> str:
        a = e.attrs
        pool = {
            "person": [f"Critics have described the work of {self._short(e)} as {rng.choice(ADJ).lower()} and {rng.choice(ADJ).lower()}.",
                       f"{self._short(e)} began performing in local venues as a teenager.",
                       f"In interviews {self._short(e)} has cited {rng.choice(GENRES)} records as an early influence."],
            "album": [f"The album received {rng.choice(('mixed', 'positive', 'warm', 'lukewarm'))} reviews.",
                      f"Its sound draws on {rng.choice(GENRES)} and {rng.choice(GENRES)}.",
                      f"The cover shows a {rng.choice(ADJ).lower()} {rng.choice(NOUN).lower()}."],
            "band": ["The band's early shows took place in small clubs.",
                     f"Their music mixes {a.get('genre', 'rock')} with elements of {rng.choice(GENRES)}."],
            "city": [f"The old town is known for its {rng.choice(NOUN).lower()} and its {rng.choice(NOUN).lower()}.",
                     "The local economy relies on trade, tourism and light industry."],
        }.get(e.type, [f"The {e.type} is known locally for its {rng.choice(NOUN).lower()}."])
        return " ".join(rng.sample(pool, min(2, len(pool))))

    def record(self, e: Entity) -> dict:
        w = self.w
        rng = random.Random(f"{w.seed}:page:{e.idx}")
        paras: list[_Para] = [_Para().add(e.title)]
        paras += self.intro(e, rng)
        if e.type != "disambiguation":
            by_rel: dict[str, list[int]] = {}
            for rel_, src in e.inv:
                by_rel.setdefault(rel_, []).append(src)
            for rel_, srcs in by_rel.items():
                heading, lead = INVERSE_HEADINGS[rel_]
                paras.append(_Para().add(f"Section::::{heading}."))
                shown = srcs[:MAX_LIST]
                para = _Para().add(lead.format(name=e.name, short=self._short(e))).links(w, shown)
                para.add("." if len(srcs) <= MAX_LIST else f", among {len(srcs) - MAX_LIST} others.")
                paras.append(para)
            if e.confusable:
                paras.append(_Para().add("Section::::See also."))
                for c in e.confusable:
                    paras.append(_Para().add("BULLET::::- ").link(w, c, w.ents[c].title))
            if rng.random() < 0.5:
                paras.append(_Para().add(f"Section::::{rng.choice(CUT_FILLER)}."))
                paras.append(_Para().add(f"Archive material on {e.name} is kept by the national library."))
            paras.append(_Para().add("Section::::References."))
            paras.append(_Para().add(f"BULLET::::- \"{e.name}\". The {rng.choice(ADJ)} {rng.choice(NOUN)} Review. {rng.randint(1990, 2024)}."))
        text, anchors = [], []
        for i, p in enumerate(paras):
            text.append(p.text() + "\n")
            for start, end, atext, idx in p.anchors:
                target = w.ents[idx]
                anchors.append({"paragraph_id": i, "start": start, "end": end, "text": atext,
                                "href": target.title.replace(" ", "%20"), "wikipedia_title": target.title,
                                "wikipedia_id": str(wiki_id(idx))})
        cats = {"person": f"{e.attrs.get('occupation', '').title()}s", "disambiguation": "Disambiguation pages",
                "country": "Countries", "city": "Cities", "university": "Universities", "company": "Companies",
                "studio": "Recording studios"}.get(e.type, f"{e.type.title()}s")
        return {
            "_id": str(wiki_id(e.idx)), "wikipedia_id": str(wiki_id(e.idx)), "wikipedia_title": e.title,
            "text": text, "anchors": anchors, "categories": f"{cats},Synthetic world",
            "wikidata_info": {"wikidata_id": f"QS{wiki_id(e.idx)}"},
            "history": {"pageid": wiki_id(e.idx), "url": f"https://en.wikipedia.org/w/index.php?title={e.title.replace(' ', '_')}"},
            "synthetic": {
                "type": e.type, "name": e.name, "attrs": {k: v for k, v in e.attrs.items() if k != "members"},
                "relations": [{"rel": r_, "target": w.ents[d].title} for r_, d in e.rels],
                "confusable_with": [w.ents[c].title for c in e.confusable],
            },
        }


def wiki_id(idx: int) -> int:
    return 100_000 + idx


def generate(pages: int, seed: int) -> Iterator[dict]:
    """KILT records of a synthetic world of about ``pages`` pages (deterministic for a seed)."""
    world = World(pages, seed).build()
    renderer = Renderer(world)
    for e in world.ents:
        yield renderer.record(e)


def write_world(path: str | Path, pages: int, seed: int, on_progress: Callable[[int], None] = lambda n: None) -> int:
    """Write the world atomically (temp file + rename); returns the number of pages."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for record in generate(pages, seed):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
            if n % 1000 == 0:
                on_progress(n)
    tmp.replace(path)
    on_progress(n)
    return n
