//! Nonsense words: the syllables they are spelled from, the words they must not be, and the words used so far
//! (in the dataset, and in the item being built).

use std::collections::HashSet;

use super::rng::Rng;

/// The syllables words are spelled from. One-syllable words are `cluster + rime` (`glomp`, `trisk`); two-syllable
/// words `onset + vowel + join + rime` (`dovask`, `kelbirv`), at most [`MAX_WORD_LEN`] letters. The final rimes are
/// ones English words rarely end in (`-omp`, `-ask`, `-irv`, ...; no `-er`, `-ed`, `-s`), which keeps the
/// [`BLOCKLIST`] of English words the inventory can still spell short.
pub(super) struct Inventory {
    pub(super) onsets: &'static [&'static str],
    pub(super) clusters: &'static [&'static str],
    pub(super) vowels: &'static [&'static str],
    pub(super) joins: &'static [&'static str],
    pub(super) cluster_joins: &'static [&'static str],
    pub(super) rimes: &'static [&'static str],
}

pub(super) const INVENTORY: Inventory = Inventory {
    onsets: &[
        "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "y",
    ],
    clusters: &[
        "bl", "br", "dr", "fl", "fr", "gl", "gr", "kl", "kr", "pl", "pr", "sk", "sl", "sn", "sp",
        "st", "tr", "vr",
    ],
    vowels: &["a", "e", "i", "o", "u"],
    joins: &[
        "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
    ],
    cluster_joins: &[
        "rb", "rd", "rf", "rg", "rk", "rl", "rm", "rn", "rp", "rs", "rt", "rv", "rz", "lb", "ld",
        "lf", "lg", "lk", "lm", "lp", "ls", "lt", "lv", "lz", "nd", "ng", "nk", "ns", "nt", "nv",
        "nz", "mb", "mp", "mf", "sk", "sp", "st",
    ],
    rimes: &[
        "arv", "emp", "enk", "erv", "elk", "eff", "esk", "ib", "iz", "imp", "irn", "irm", "irv",
        "ilk", "ilt", "ilf", "isk", "omp", "onk", "ork", "orv", "oll", "osk", "ub", "uv", "urk",
        "urm", "urv", "ulk", "ulf", "ull", "usk", "av", "az", "eb", "ef", "ep", "iv", "of", "ud",
        "uf", "ug", "amp", "ank", "arn", "alk", "alf", "ask", "erk", "erm", "elf", "ink", "olk",
        "olt", "olf", "ump",
    ],
};

pub(super) const MAX_WORD_LEN: usize = 7;

/// Tries for one new word before giving up; the space is so much larger than any dataset that this is only
/// reached when it has been shrunk.
const MAX_TRIES: usize = 10_000;

/// Every English word (and common name) that [`INVENTORY`] can spell: all of its words were checked against
/// the large American and British English word lists when the inventory was chosen. Rerun that check when the
/// inventory changes. Sorted, for binary search.
const BLOCKLIST: &[&str] = &[
    "berserk", "blank", "bleb", "blimp", "blink", "blub", "braz", "brink", "brisk", "brusk",
    "burbank", "damask", "debug", "deneb", "deriv", "drank", "drink", "droll", "drub", "drug",
    "dundalk", "flank", "flask", "flub", "flump", "frank", "frisk", "frug", "frump", "gandalf",
    "ganef", "ganof", "gazump", "glib", "goldarn", "graz", "grep", "grub", "grump", "gustav",
    "manuf", "nonself", "norfolk", "plank", "pleb", "plonk", "plug", "plump", "prank", "pref",
    "prep", "preterm", "primp", "prink", "priv", "prof", "relink", "revamp", "revolt", "rudolf",
    "salep", "skep", "skimp", "skink", "skulk", "skull", "slav", "slink", "slub", "slug", "slump",
    "snub", "snug", "spank", "sperm", "spilt", "spiv", "spud", "stalk", "stamp", "stank", "step",
    "stilt", "stink", "stomp", "stork", "stub", "stud", "stull", "stump", "talmud", "topaz",
    "tramp", "tref", "troll", "tromp", "trug", "trull", "trump",
];

/// Spellings no word may contain, whatever a dictionary says.
const OFFENSIVE: &[&str] = &[
    "anal", "anus", "bitch", "boob", "clit", "cum", "dik", "dild", "fag", "fap", "fuk", "kok",
    "kum", "milf", "nazi", "nig", "pis", "poop", "porn", "pube", "rape", "sex", "slut", "smeg",
    "sperm", "spunk", "tard", "tit", "turd", "vag", "wank",
];

impl Inventory {
    fn sample(&self, rng: &mut Rng) -> String {
        if rng.below(4) == 0 {
            return format!("{}{}", rng.pick(self.clusters), rng.pick(self.rimes));
        }
        // Simple onsets and joins are favoured: they keep words short and easy to say.
        let onset = if rng.below(5) < 3 {
            rng.pick(self.onsets)
        } else {
            rng.pick(self.clusters)
        };
        let join = if rng.coin() {
            rng.pick(self.joins)
        } else {
            rng.pick(self.cluster_joins)
        };
        format!(
            "{onset}{}{join}{}",
            rng.pick(self.vowels),
            rng.pick(self.rimes)
        )
    }

    /// Every word the inventory can spell (before the blocklist), for checking it against a dictionary.
    #[cfg(test)]
    pub(super) fn all_words(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self.clusters {
            for r in self.rimes {
                out.push(format!("{c}{r}"));
            }
        }
        for o in self.onsets.iter().chain(self.clusters) {
            for v in self.vowels {
                for j in self.joins.iter().chain(self.cluster_joins) {
                    for r in self.rimes {
                        let w = format!("{o}{v}{j}{r}");
                        if w.len() <= MAX_WORD_LEN {
                            out.push(w);
                        }
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Whether a spelled word may be used: not English, nothing offensive in it.
pub(super) fn allowed(word: &str) -> bool {
    BLOCKLIST.binary_search(&word).is_err() && !OFFENSIVE.iter().any(|o| word.contains(o))
}

/// The words used so far in the whole dataset.
pub(super) struct Lexicon<'a> {
    pub(super) inventory: &'a Inventory,
    pub(super) used: HashSet<String>,
}

impl Lexicon<'_> {
    /// A new word, unused anywhere, whose first letter is not in `avoid` (so that no two words of an item look
    /// alike at a glance or share a prefix).
    fn draw(&mut self, rng: &mut Rng, avoid: &[u8]) -> Result<String, String> {
        for _ in 0..MAX_TRIES {
            let w = self.inventory.sample(rng);
            if w.len() > MAX_WORD_LEN
                || avoid.contains(&w.as_bytes()[0])
                || self.used.contains(&w)
                || !allowed(&w)
            {
                continue;
            }
            self.used.insert(w.clone());
            return Ok(w);
        }
        Err(format!(
            "ran out of new nonsense words after {} (no new one in {MAX_TRIES} tries)",
            self.used.len()
        ))
    }
}

/// The words of the item being built.
pub(super) struct ItemWords<'a, 'b> {
    pub(super) lexicon: &'a mut Lexicon<'b>,
    pub(super) words: Vec<String>,
    pub(super) fresh_words: Vec<String>,
    pub(super) fresh_names: Vec<String>,
}

impl ItemWords<'_, '_> {
    /// A new lowercase word for this item.
    pub(super) fn word(&mut self, rng: &mut Rng) -> Result<String, String> {
        let avoid: Vec<u8> = self.words.iter().map(|w| w.as_bytes()[0]).collect();
        let w = self.lexicon.draw(rng, &avoid)?;
        self.words.push(w.clone());
        Ok(w)
    }

    /// A new word written as a name.
    pub(super) fn name(&mut self, rng: &mut Rng) -> Result<String, String> {
        Ok(capitalize(&self.word(rng)?))
    }

    /// The `i`-th distractor word that appears nowhere in the context (shared by the item's questions).
    pub(super) fn fresh(
        &mut self,
        rng: &mut Rng,
        i: usize,
        as_name: bool,
    ) -> Result<String, String> {
        while self.fresh_pool(as_name).len() <= i {
            let w = self.word(rng)?;
            let w = if as_name { capitalize(&w) } else { w };
            self.fresh_pool(as_name).push(w);
        }
        Ok(self.fresh_pool(as_name)[i].clone())
    }

    fn fresh_pool(&mut self, as_name: bool) -> &mut Vec<String> {
        if as_name {
            &mut self.fresh_names
        } else {
            &mut self.fresh_words
        }
    }
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocklist_matches_the_inventory() {
        assert!(
            BLOCKLIST.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        let space: HashSet<String> = INVENTORY.all_words().into_iter().collect();
        assert!(space.len() > 300_000, "{}", space.len());
        for w in BLOCKLIST {
            assert!(space.contains(*w), "{w} cannot be spelled; stale entry");
            assert!(!allowed(w));
        }
        for w in ["blank", "drink", "stomp", "trump"] {
            assert!(!allowed(w), "{w}");
        }
        assert!(
            !allowed("nigomp") && !allowed("titub"),
            "offensive spellings"
        );
        assert!(allowed("glomp") && allowed("dovask"));
    }
}
