"""Word lists of the semantic guard. Hand-written; each list errs towards rejecting a hit (a lost
hit costs one upstream call, a wrong hit serves a wrong answer)."""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _contrast_sets(text: str) -> tuple[tuple[tuple[str, ...], ...], ...]:
    return tuple(
        tuple(tuple(s.strip() for s in member.split(",")) for member in line.split("|"))
        for line in text.replace("|\n", "|").strip().splitlines()  # a line ending in "|" continues
    )


# Words that are not entities even when capitalised (sentence starts, titles, shouting).
COMMON = _words(
    """
    a about above after again against all also am an and any are as ask at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just let me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own please same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were what
    when where which while who whom whose why will with would you your yours yourself yourselves hi
    hello hey thanks thank ok okay yes explain describe tell give list write show make find help
    compare summarize summarise translate convert calculate define create generate suggest recommend
    provide name get need want know think best good is whats what's hows how's whos who's wheres
    where's im i'm i've i'd can't cannot don't doesn't isn't aren't won't didn't shouldn't wouldn't
    couldn't dear question quick simple short briefly brief step steps way ways use using via per vs
    versus etc
    """
)

NEGATIONS = _words(
    """
    not no never none nobody nothing neither nor nowhere without cannot cant dont doesnt isnt arent
    wont didnt shouldnt wouldnt couldnt hasnt havent hadnt wasnt werent aint
    """
)
NEGATIVE_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-", "de", "anti")

QUESTION_FOCUS = _words(  # not "which": it asks what "what" asks ("which/what is the best ...")
    """
    why when where who whom whose
    """
)
QUESTION_FOCUS_PHRASES = ("how many", "how much", "how long", "how old", "how far", "how often", "how big")

# A question that opens with one of these asks yes or no: "Should I stop X" is not "How should I stop X".
POLAR_OPENERS = _words(
    """
    is are was were do does did can could should would will shall may might must has have had am
    """
)

# "one" as a pronoun, not the number 1: after these words ("how does one ...", "which one") ...
PRONOUN_ONE_AFTER = _words(
    """
    does do can could should would will may might must did no any every each some which the this that
    another
    """
)
# ... or before these ("one of the best", "one another").
PRONOUN_ONE_BEFORE = _words("of another")

# Connectors whose two sides are ordered: "A to B" is not "B to A".
DIRECTIONAL = _words(
    """
    to into than from vs versus over before after -> => →
    """
)

NUMBER_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
    "dozen": 12,
    "half": 0.5,
    "once": 1,
    "twice": 2,
    "thrice": 3,
    "double": 2,
    "triple": 3,
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "single": 1,
    "pair": 2,
    "couple": 2,
}

# Contrast sets, one per line: using a different member changes the answer. Members are separated
# by "|", a member's synonyms by "," (single words after light stemming, or phrases). Both texts
# must mention the same members, so listing only the marked side of a pair ("hide", not "show")
# still catches the swap while sparing paraphrases that use the common word in another sense.
# All units and currencies share one set, so that their order is compared ("50 liters in pounds"
# is not "50 pounds in liters", "30 francs in euros" is not "30 euros in francs").
CONTRAST_SETS = _contrast_sets(
    """
    enable, activate, turn on, switch on | disable, deactivate, turn off, switch off
    increase, raise, grow, boost | decrease, reduce, lower, shrink
    add, insert, append | remove, delete, drop, erase
    install | uninstall
    open | close
    start, begin, launch | stop, halt
    connect | disconnect
    encrypt | decrypt
    compress, zip | decompress, unzip
    import | export
    upload | download
    push | pull
    buy, purchase | sell
    lend | borrow
    win | lose
    accept | reject, decline
    allow, permit | deny, block, forbid, ban
    include | exclude
    max, maximum, largest, biggest, highest | min, minimum, smallest, lowest
    bigger, larger, greater, higher | smaller, less, lower, fewer
    high | low
    heavy, heavier, heaviest | light, lighter, lightest
    tall, taller, tallest | short, shorter, shortest
    long, longer, longest
    strong, stronger, strongest | weak, weaker, weakest
    rich, richer, richest | poor, poorer, poorest
    wide, wider, widest | narrow, narrower, narrowest
    deep, deeper, deepest | shallow, shallower
    easy, easier, easiest | hard, harder, hardest, difficult
    big | small
    bad, badly
    more | less, fewer
    most | least
    best | worst
    better | worse
    fast, faster, fastest, quick, quicker | slow, slower, slowest
    cheap, cheaper, cheapest | expensive, costly, pricey
    hot, warm, heat | cold, cool, freeze, freezing
    boil, boiling | freeze, freezing
    above | below, beneath
    before, prior to | after
    inside, internal | outside, external
    input | output
    ascending | descending
    first | last, final
    early, earliest | late, latest
    old, oldest, older | newest, newer, young, youngest, younger
    positive | negative
    true | false
    pro, advantage, benefit | con, disadvantage, drawback, risk
    safe | dangerous, harmful
    north | south | east | west
    left | right
    login, log in, sign in | logout, log out, sign out
    lock | unlock
    unhide, reveal | hide
    expand | collapse
    encode, serialize | decode, deserialize, parse
    subscribe | unsubscribe
    love | dislike, hate
    agree | disagree
    appear | disappear
    gain | lose, loss
    sunrise, sun rise, dawn | sunset, sun set, dusk
    arrive, arrival | depart, departure
    send | receive
    read | write
    upper, uppercase | lower, lowercase
    horizontal | vertical
    public | private
    local | remote, global
    male, man, men | female, woman, women
    odd | even
    sync, synchronous | async, asynchronous
    static | dynamic
    average | median
    sum, total | product | difference
    yesterday | today | tomorrow
    past | future
    day, daily | week, weekly | month, monthly | year, yearly, annual
    second | minute | hour
    january, jan | february, feb | march, mar | april, apr | june, jun | july, jul | august, aug |
    september, sep, sept | october, oct | november, nov | december, dec
    monday | tuesday | wednesday | thursday | friday | saturday | sunday
    km, kilometer, kilometre | mile, mi | m, meter, metre | ft, foot, feet | cm, centimeter | inch, inches | yard |
    kg, kilogram, kilo | lb, lbs, pound | g, gram | oz, ounce | ton, tonne |
    celsius, centigrade, °c | fahrenheit, °f | kelvin |
    l, liter, litre | gallon | ml, milliliter | cup | pint | quart |
    mb, megabyte | gb, gigabyte | tb, terabyte | kb, kilobyte |
    usd, dollar, $ | eur, euro, € | gbp, £, sterling | jpy, yen, ¥ | inr, rupee | chf, franc | cny, yuan, renminbi |
    mxn, peso | krw, won | cad | aud | btc, bitcoin
    """
)

# Names that are entities even in lower case (users rarely capitalise them).
KNOWN_NAMES = _words(
    """
    python java javascript typescript rust go golang ruby php perl swift kotlin scala haskell c c++
    c# csharp fortran cobol lua r matlab julia sql bash powershell html css react vue angular svelte
    django flask rails spring node nodejs deno numpy pandas pytorch tensorflow docker kubernetes k8s
    terraform ansible aws azure gcp linux windows macos mac ios android ubuntu debian fedora centos
    chrome firefox safari edge excel word powerpoint outlook gmail slack zoom git github gitlab
    postgres postgresql mysql sqlite mongodb redis kafka spark hadoop nginx apache iphone ipad pixel
    samsung google apple microsoft amazon meta openai anthropic netflix spotify uber tesla bitcoin
    ethereum
    """
)
