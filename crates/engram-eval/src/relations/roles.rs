//! roles: a chain P0 → P1 → P2 → P3 of one asymmetric relation between named people ("P0 is the teacher of
//! P1"). In this closed world everyone has at most one on each side, so every question has one answer.

use super::lexicon::ItemWords;
use super::questions::{Draft, Fill, Parts, context, fill};
use super::rng::Rng;
use engram_inject::QuestionKind::{Direct, Implication, Paraphrase, Reversal};

/// One relation: the agent `{A}` is, say, the teacher of the patient `{B}`.
struct Role {
    /// Sentences that name the agent first.
    agent_first: [&'static str; 3],
    /// Sentences that name the patient first.
    patient_first: [&'static str; 3],
    /// Cue the patient `{B}`, ask for the agent.
    ask_agent: [&'static str; 3],
    ask_agent_paraphrase: [&'static str; 3],
    /// Cue the agent `{A}`, ask for the patient.
    ask_patient: [&'static str; 3],
    ask_patient_paraphrase: [&'static str; 3],
    /// Two steps up from `{X}`: the agent of X's agent.
    agent_of_agent: [&'static str; 3],
    /// Two steps down from `{X}`: the patient of X's patient.
    patient_of_patient: [&'static str; 3],
}

const ROLES: [Role; 5] = [
    Role {
        agent_first: [
            "{A} is the teacher of {B}.",
            "{A} teaches {B}.",
            "{A} is {B}'s teacher.",
        ],
        patient_first: [
            "{B} is the student of {A}.",
            "{B} is taught by {A}.",
            "{B}'s teacher is {A}.",
        ],
        ask_agent: [
            "Who is the teacher of {B}?",
            "Who teaches {B}?",
            "Who is {B}'s teacher?",
        ],
        ask_agent_paraphrase: [
            "Whose student is {B}?",
            "By whom is {B} taught?",
            "Name the teacher of {B}.",
        ],
        ask_patient: [
            "Whom does {A} teach?",
            "Who is the student of {A}?",
            "Who is {A}'s student?",
        ],
        ask_patient_paraphrase: [
            "Whose teacher is {A}?",
            "Who is taught by {A}?",
            "Name the student of {A}.",
        ],
        agent_of_agent: [
            "Who is the teacher of {X}'s teacher?",
            "Who teaches the teacher of {X}?",
            "Who is the teacher of the person who teaches {X}?",
        ],
        patient_of_patient: [
            "Who is the student of {X}'s student?",
            "Whom does the student of {X} teach?",
            "Who is taught by the person whom {X} teaches?",
        ],
    },
    Role {
        agent_first: [
            "{A} is the mother of {B}.",
            "{A} is {B}'s mother.",
            "{A} gave birth to {B}.",
        ],
        patient_first: [
            "{B} is the child of {A}.",
            "{B}'s mother is {A}.",
            "{B} was born to {A}.",
        ],
        ask_agent: [
            "Who is the mother of {B}?",
            "Who is {B}'s mother?",
            "Who gave birth to {B}?",
        ],
        ask_agent_paraphrase: [
            "Whose child is {B}?",
            "Name the mother of {B}.",
            "To whom was {B} born?",
        ],
        ask_patient: [
            "Who is the child of {A}?",
            "Who is {A}'s child?",
            "Whose mother is {A}?",
        ],
        ask_patient_paraphrase: [
            "Name the child of {A}.",
            "Who was born to {A}?",
            "To whom did {A} give birth?",
        ],
        agent_of_agent: [
            "Who is the mother of {X}'s mother?",
            "Who is the mother of the mother of {X}?",
            "Who gave birth to {X}'s mother?",
        ],
        patient_of_patient: [
            "Who is the child of {X}'s child?",
            "Who is the child of the child of {X}?",
            "Who was born to {X}'s child?",
        ],
    },
    Role {
        agent_first: [
            "{A} is the father of {B}.",
            "{A} is {B}'s father.",
            "{A} is the proud father of {B}.",
        ],
        patient_first: [
            "{B} is the child of {A}.",
            "{B}'s father is {A}.",
            "{B} is the son of {A}.",
        ],
        ask_agent: [
            "Who is the father of {B}?",
            "Who is {B}'s father?",
            "Whose son is {B}?",
        ],
        ask_agent_paraphrase: [
            "Whose child is {B}?",
            "Name the father of {B}.",
            "Who is the parent of {B}?",
        ],
        ask_patient: [
            "Who is the child of {A}?",
            "Who is {A}'s child?",
            "Whose father is {A}?",
        ],
        ask_patient_paraphrase: [
            "Name the child of {A}.",
            "Who is the son of {A}?",
            "Of whom is {A} the father?",
        ],
        agent_of_agent: [
            "Who is the father of {X}'s father?",
            "Who is the father of the father of {X}?",
            "Whose son is {X}'s father?",
        ],
        patient_of_patient: [
            "Who is the child of {X}'s child?",
            "Who is the child of the child of {X}?",
            "Who is the son of {X}'s son?",
        ],
    },
    Role {
        agent_first: [
            "{A} employs {B}.",
            "{A} is the employer of {B}.",
            "{A} is {B}'s employer.",
        ],
        patient_first: [
            "{B} works for {A}.",
            "{B} is employed by {A}.",
            "{B}'s employer is {A}.",
        ],
        ask_agent: [
            "Who employs {B}?",
            "Who is {B}'s employer?",
            "Who is the employer of {B}?",
        ],
        ask_agent_paraphrase: [
            "For whom does {B} work?",
            "Name the employer of {B}.",
            "By whom is {B} employed?",
        ],
        ask_patient: [
            "Whom does {A} employ?",
            "Who is {A}'s employee?",
            "Who works for {A}?",
        ],
        ask_patient_paraphrase: [
            "Who is employed by {A}?",
            "Name the employee of {A}.",
            "Whose employer is {A}?",
        ],
        agent_of_agent: [
            "Who employs {X}'s employer?",
            "Who is the employer of {X}'s employer?",
            "For whom does {X}'s employer work?",
        ],
        patient_of_patient: [
            "Whom does {X}'s employee employ?",
            "Who works for the employee of {X}?",
            "Who is the employee of {X}'s employee?",
        ],
    },
    Role {
        agent_first: [
            "{A} coaches {B}.",
            "{A} is the coach of {B}.",
            "{A} is {B}'s coach.",
        ],
        patient_first: [
            "{B} is coached by {A}.",
            "{B} trains under {A}.",
            "{B}'s coach is {A}.",
        ],
        ask_agent: [
            "Who coaches {B}?",
            "Who is {B}'s coach?",
            "Who is the coach of {B}?",
        ],
        ask_agent_paraphrase: [
            "Under whom does {B} train?",
            "By whom is {B} coached?",
            "Name the coach of {B}.",
        ],
        ask_patient: [
            "Whom does {A} coach?",
            "Who trains under {A}?",
            "Who is coached by {A}?",
        ],
        ask_patient_paraphrase: [
            "Whose coach is {A}?",
            "Name the person whom {A} coaches.",
            "Who is {A} the coach of?",
        ],
        agent_of_agent: [
            "Who coaches {X}'s coach?",
            "Who is the coach of {X}'s coach?",
            "Under whom does {X}'s coach train?",
        ],
        patient_of_patient: [
            "Who trains under the person who trains under {X}?",
            "Whom does the person coached by {X} coach?",
            "Who is coached by the one whom {X} coaches?",
        ],
    },
];

const ROLE_INTRO: [&str; 4] = [
    "Four people from one village are described here.",
    "This is about four people who know each other.",
    "The following is known about four people in a small town.",
    "Here are some facts about four people.",
];

pub(super) fn roles(rng: &mut Rng, w: &mut ItemWords) -> Result<Parts, String> {
    let role = rng.pick_ref(&ROLES);
    let people = [w.name(rng)?, w.name(rng)?, w.name(rng)?, w.name(rng)?];
    // Fact i: people[i] is the agent of people[i + 1], stated agent first or patient first.
    let agent_first: Vec<bool> = (0..3).map(|_| rng.coin()).collect();
    let facts = (0..3)
        .map(|i| {
            let templates = if agent_first[i] {
                &role.agent_first
            } else {
                &role.patient_first
            };
            fill(
                rng.pick(templates),
                &[("A", &people[i]), ("B", &people[i + 1])],
            )
        })
        .collect();
    let context = context(rng.pick(&ROLE_INTRO).to_string(), facts, rng);

    // Wrong answers: the others of the four, never the cue, then a fresh name.
    let others = |rng: &mut Rng, answer: &str, cue: &str| {
        let rest: Vec<String> = people
            .iter()
            .filter(|p| *p != answer && *p != cue)
            .cloned()
            .collect();
        rng.shuffled(&rest)
    };
    // Fact i asked from its first-mentioned person (forward) or from the other one (reversed).
    let ask = |rng: &mut Rng, kind, i: usize, forward: bool, paraphrase: bool| {
        let (a, b) = (&people[i], &people[i + 1]);
        let asks_patient = agent_first[i] == forward;
        let templates = match (asks_patient, paraphrase) {
            (true, false) => &role.ask_patient,
            (true, true) => &role.ask_patient_paraphrase,
            (false, false) => &role.ask_agent,
            (false, true) => &role.ask_agent_paraphrase,
        };
        let (answer, cue) = if asks_patient { (b, a) } else { (a, b) };
        let wrong = others(rng, answer, cue);
        Draft::new(
            kind,
            fill(rng.pick(templates), &[("A", a), ("B", b)]),
            answer,
            wrong,
            Fill::Name,
        )
    };
    let direct_facts = &rng.shuffled(&[0, 1, 2])[..2];
    // The reversal asks one of the facts also asked forward, so the two directions can be compared.
    let (para_fact, rev_fact) = (rng.pick(direct_facts), rng.pick(direct_facts));
    let paraphrase = ask(rng, Paraphrase, para_fact, true, true);
    let reversal = ask(rng, Reversal, rev_fact, false, false);
    let start = rng.below(2);
    let implication = if rng.coin() {
        let (answer, cue) = (&people[start], &people[start + 2]);
        let qn = fill(rng.pick(&role.agent_of_agent), &[("X", cue)]);
        Draft::new(
            Implication,
            qn,
            answer,
            others(rng, answer, cue),
            Fill::Name,
        )
    } else {
        let (answer, cue) = (&people[start + 2], &people[start]);
        let qn = fill(rng.pick(&role.patient_of_patient), &[("X", cue)]);
        Draft::new(
            Implication,
            qn,
            answer,
            others(rng, answer, cue),
            Fill::Name,
        )
    };
    let mut drafts: Vec<Draft> = direct_facts
        .iter()
        .map(|&i| ask(rng, Direct, i, true, false))
        .collect();
    drafts.extend([paraphrase, reversal, implication]);
    Ok(Parts {
        context,
        drafts,
        terms: people.to_vec(),
        values: Vec::new(),
    })
}
