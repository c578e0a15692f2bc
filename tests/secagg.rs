//! Double masking (issue 23 part 2) with real parts: real umbrella keys, real
//! identities and announced X25519 keys, real GLWE encryption and sums,
//! sealed share bundles and the owner-only mask ledger. The aggregator is
//! played by the test, honest or lying.

use std::collections::BTreeMap;

use fedhe::client::secagg::{Shown, unmask_step};
use fedhe::client::{LedgerError, MaskLedger};
use fedhe::crypto::{
    Accumulator, EncryptedUpdate, Masks, ParamSet, SecretKey, decrypt_integers, encrypt_weighted,
    encrypt_weighted_masked, plaintext_bits,
};
use fedhe::privacy::masks::{AttemptSecret, Identity, MaskContext};
use fedhe::privacy::secagg::{
    HeldShares, Reveal, SealedShares, SecAggError, SecAggRound, check_survivors, double_masks,
    open_shares, seal_shares, sign_survivors, unmask,
};
use fedhe::privacy::shamir;
use rand::{Rng, SeedableRng};

const CTX: MaskContext<'static> = MaskContext {
    plan: "0123456789abcdef",
    round: 7,
    attempt: 1,
};

struct Site {
    id: String,
    identity: Identity,
    secret: AttemptSecret,
    values: Vec<f64>,
    weight: f64,
    ledger: MaskLedger,
}

/// A roster of `n` sites with random updates of `len` values and their
/// announced keys (sorted ids, as the aggregator fixes them).
struct Federation {
    key: SecretKey,
    roster: Vec<String>,
    sites: Vec<Site>,
    keys: Vec<(String, [u8; 32])>,
    identities: BTreeMap<String, [u8; 32]>,
    len: usize,
}

impl Federation {
    fn new(n: usize, len: usize) -> Federation {
        let key = SecretKey::generate(ParamSet::Standard64);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
        let roster: Vec<String> = (0..n).map(|i| format!("site-{i:02}")).collect();
        let sites: Vec<Site> = roster
            .iter()
            .map(|id| Site {
                id: id.clone(),
                identity: Identity::generate().unwrap(),
                secret: AttemptSecret::generate().unwrap(),
                values: (0..len).map(|_| rng.random_range(-2.0..2.0)).collect(),
                weight: f64::from(rng.random_range(1..500u32)),
                ledger: MaskLedger::in_memory(),
            })
            .collect();
        let keys = sites
            .iter()
            .map(|s| {
                let a = s.identity.announce(&CTX, &s.id, &s.secret);
                (s.id.clone(), a.public)
            })
            .collect();
        let identities = sites
            .iter()
            .map(|s| (s.id.clone(), s.identity.public()))
            .collect();
        Federation {
            key,
            roster,
            sites,
            keys,
            identities,
            len,
        }
    }

    fn round(&self, min_clients: usize) -> SecAggRound<'_> {
        SecAggRound::new(CTX, &self.roster, min_clients).unwrap()
    }

    fn site(&self, id: &str) -> &Site {
        self.sites.iter().find(|s| s.id == id).unwrap()
    }

    /// Site `id`'s one upload: its double-masked update and its sealed
    /// bundles (the ledger binds the values first).
    fn upload(&self, round: &SecAggRound<'_>, id: &str) -> (EncryptedUpdate, Vec<SealedShares>) {
        let s = self.site(id);
        s.ledger.bind(&CTX, &s.values, s.weight).unwrap();
        let masks = double_masks(&s.secret, round, id, &self.keys).unwrap();
        let update = encrypt_weighted_masked(&self.key, &s.values, s.weight, &masks).unwrap();
        (
            update,
            seal_shares(&s.secret, round, id, &self.keys).unwrap(),
        )
    }

    fn public(&self, id: &str) -> (String, [u8; 32]) {
        self.keys.iter().find(|(k, _)| k == id).unwrap().clone()
    }

    /// What `me` holds once the aggregator relayed the bundles addressed to
    /// it from `from`.
    fn held(&self, round: &SecAggRound<'_>, me: &str, bundles: &[SealedShares]) -> Vec<HeldShares> {
        let s = self.site(me);
        bundles
            .iter()
            .filter(|b| b.to == me)
            .map(|b| open_shares(&s.secret, round, me, &self.public(&b.from), b).unwrap())
            .collect()
    }

    /// `me`'s unmask step for the survivor set it was shown, with the
    /// signatures it was shown: check, record in the ledger, reveal.
    fn unmask_step(
        &self,
        round: &SecAggRound<'_>,
        me: &str,
        survivors: &[String],
        signatures: &[(String, [u8; 64])],
        bundles: &[SealedShares],
    ) -> Result<Reveal, String> {
        let s = self.site(me);
        let shown = Shown {
            survivors,
            signatures,
            bundles,
        };
        unmask_step(
            &s.ledger,
            &s.secret,
            round,
            me,
            &self.identities,
            &self.keys,
            &shown,
        )
        .map_err(|e| e.to_string())
    }

    fn signatures(&self, round: &SecAggRound<'_>, signers: &[String], set: &[String]) -> Sigs {
        signers
            .iter()
            .map(|id| {
                let s = self.site(id);
                (id.clone(), sign_survivors(&s.identity, round, id, set))
            })
            .collect()
    }

    /// The exact sum of `ids`' updates, without any mask.
    fn plain_sum(&self, ids: &[String]) -> Vec<i64> {
        let mut acc = Accumulator::new(&self.key.public(), self.len);
        for id in ids {
            let s = self.site(id);
            acc.add(&encrypt_weighted(&self.key, &s.values, s.weight).unwrap())
                .unwrap();
        }
        decrypt_integers(&self.key, &acc).unwrap()
    }
}

type Sigs = Vec<(String, [u8; 64])>;

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn all_but(roster: &[String], out: &[&str]) -> Vec<String> {
    roster
        .iter()
        .filter(|m| !out.contains(&m.as_str()))
        .cloned()
        .collect()
}

/// χ² of `seen` over 16 equal buckets of the plaintext range (15 degrees of
/// freedom; above 50 has p < 1e-6).
fn chi2(seen: &[i64], bits: u32) -> f64 {
    let mut buckets = [0f64; 16];
    for x in seen {
        let u = (*x as i128 + (1i128 << (bits - 1))) as u128;
        buckets[(u >> (bits - 4)) as usize] += 1.0;
    }
    let e = seen.len() as f64 / 16.0;
    buckets.iter().map(|o| (o - e) * (o - e) / e).sum()
}

/// Honest dropouts: one site never uploads, another uploads and then
/// vanishes before it reveals; the unmasked sum is bit for bit the
/// survivors' exact sum. With fewer reveals than the threshold nothing can
/// be unmasked.
#[test]
fn honest_dropouts_before_and_during_unmasking_give_the_survivors_exact_sum() {
    let fed = Federation::new(9, 3_000);
    let round = fed.round(3);
    assert_eq!(round.threshold, 7);
    // site-08 drops before its upload.
    let survivors = all_but(&fed.roster, &["site-08"]);
    let mut acc = Accumulator::new(&fed.key.public(), fed.len);
    let mut bundles = Vec::new();
    for id in &survivors {
        let (update, sealed) = fed.upload(&round, id);
        acc.add(&update).unwrap();
        bundles.extend(sealed);
    }
    // Masked, the survivors' sum is not their sum: the self masks and the
    // pair masks with site-08 are in it.
    let exact = fed.plain_sum(&survivors);
    assert_ne!(decrypt_integers(&fed.key, &acc).unwrap(), exact);
    let sigs = fed.signatures(&round, &survivors, &survivors);
    // site-07 uploaded but drops during unmasking: seven reveals remain.
    let revealers = all_but(&survivors, &["site-07"]);
    let reveals: Vec<Reveal> = revealers
        .iter()
        .map(|me| {
            fed.unmask_step(&round, me, &survivors, &sigs, &bundles)
                .unwrap()
        })
        .collect();
    // Six are not enough.
    assert!(matches!(
        unmask(&round, &survivors, &reveals[..6]),
        Err(SecAggError::SelfSeed { .. })
    ));
    let correction = unmask(&round, &survivors, &reveals).unwrap();
    let mut published = acc.clone();
    published.add_masks(&correction);
    assert_eq!(decrypt_integers(&fed.key, &published).unwrap(), exact);

    // No dropout at all: the self masks alone come off.
    let fed = Federation::new(4, 2_000);
    let round = fed.round(3);
    assert_eq!(round.threshold, 3);
    let mut acc = Accumulator::new(&fed.key.public(), fed.len);
    let mut bundles = Vec::new();
    for id in &fed.roster {
        let (update, sealed) = fed.upload(&round, id);
        acc.add(&update).unwrap();
        bundles.extend(sealed);
    }
    let sigs = fed.signatures(&round, &fed.roster, &fed.roster);
    let reveals: Vec<Reveal> = fed
        .roster
        .iter()
        .map(|me| {
            fed.unmask_step(&round, me, &fed.roster, &sigs, &bundles)
                .unwrap()
        })
        .collect();
    assert!(reveals.iter().all(|r| r.pair_shares.is_empty()));
    acc.add_masks(&unmask(&round, &fed.roster, &reveals).unwrap());
    assert_eq!(
        decrypt_integers(&fed.key, &acc).unwrap(),
        fed.plain_sum(&fed.roster)
    );
}

/// Part 1 of the lying aggregator: different dropout sets shown to
/// different sites never gather the threshold's signatures.
fn shown_different_sets(fed: &Federation, round: &SecAggRound<'_>, victim: &str, colluder: &str) {
    // 1. Different dropout sets to different sites: S1 (victim dropped) to
    // three honest sites and the colluder, S2 (everyone) to the victim and
    // the fourth honest site. Neither set gathers five signatures.
    let s1 = all_but(&fed.roster, &[victim]);
    let s2 = fed.roster.clone();
    let group1 = ids(&["site-01", "site-02", "site-03", colluder]);
    let group2 = ids(&[victim, "site-04", colluder]);
    let mut sigs1 = fed.signatures(round, &group1, &s1);
    let sigs2 = fed.signatures(round, &group2, &s2);
    for me in ["site-01", "site-02", "site-03"] {
        let err = check_survivors(round, me, &fed.identities, &s1, &sigs1).unwrap_err();
        assert_eq!(
            err,
            SecAggError::NotConsistent {
                valid: 4,
                needed: 5
            }
        );
    }
    for me in [victim, "site-04"] {
        let err = check_survivors(round, me, &fed.identities, &s2, &sigs2).unwrap_err();
        assert_eq!(
            err,
            SecAggError::NotConsistent {
                valid: 3,
                needed: 5
            }
        );
    }
    // Signatures on the other set, or forged ones, do not count.
    sigs1.extend(sigs2.iter().cloned());
    sigs1.push(("site-04".into(), [7u8; 64]));
    assert!(check_survivors(round, "site-01", &fed.identities, &s1, &sigs1).is_err());
}

/// The dropout attack of issue 23 against double masking: a lying
/// aggregator collects all six uploads, declares the victim dropped after
/// it uploaded, and a colluding member (a key holder) gives it everything
/// it holds. The key holder's best reconstruction of the victim's update is
/// uniform; so is the difference of the full sum and the published one.
/// Showing different dropout sets to different sites fails the signed
/// consistency check, and a site never reveals for two sets.
#[test]
fn a_lying_aggregator_and_a_colluding_key_holder_read_the_victim_as_uniform() {
    let fed = Federation::new(6, 20_000);
    let round = fed.round(3);
    assert_eq!(round.threshold, 5);
    let bits = plaintext_bits(&fed.key.layout());
    let (victim, colluder) = ("site-00", "site-05");
    let mut uploads = BTreeMap::new();
    let mut bundles = Vec::new();
    for id in &fed.roster {
        let (update, sealed) = fed.upload(&round, id);
        uploads.insert(id.clone(), update);
        bundles.extend(sealed);
    }

    shown_different_sets(&fed, &round, victim, colluder);

    // 2. A consistent lie: everyone but the victim is shown S1 and signs it
    // (they cannot tell the victim uploaded). They reveal for S1.
    let survivors = all_but(&fed.roster, &[victim]);
    let sigs = fed.signatures(&round, &survivors, &survivors);
    let reveals: Vec<Reveal> = survivors
        .iter()
        .map(|me| {
            fed.unmask_step(&round, me, &survivors, &sigs, &bundles)
                .unwrap()
        })
        .collect();
    // Having revealed for S1, a site refuses S2, whatever its signatures.
    let s2 = fed.roster.clone();
    let sigs_all = fed.signatures(&round, &fed.roster, &s2);
    let refused = fed
        .unmask_step(&round, "site-01", &s2, &sigs_all, &bundles)
        .unwrap_err();
    assert_eq!(
        refused,
        LedgerError::RevealConflict {
            round: 7,
            attempt: 1
        }
        .to_string()
    );
    assert!(
        reveals.iter().all(|r| !r.self_shares.contains_key(victim)),
        "no honest survivor reveals the victim's self-seed share"
    );
    // The published sum over S1 is correct.
    let mut published = Accumulator::new(&fed.key.public(), fed.len);
    for id in &survivors {
        published.add(&uploads[id]).unwrap();
    }
    published.add_masks(&unmask(&round, &survivors, &reveals).unwrap());
    assert_eq!(
        decrypt_integers(&fed.key, &published).unwrap(),
        fed.plain_sum(&survivors)
    );

    // 3. The attack: the key holder decrypts the victim's upload and takes
    // off every mask term it can learn — the victim's pair seeds with every
    // survivor (revealed as a dropped site's), and all the colluder holds.
    let mut best = Accumulator::new(&fed.key.public(), fed.len);
    best.add(&uploads[victim]).unwrap();
    let mut known = Vec::new();
    for w in &survivors {
        let shares: Vec<(u64, shamir::Share)> = reveals
            .iter()
            .filter_map(|r| {
                r.pair_shares
                    .get(&(w.clone(), victim.to_string()))
                    .map(|s| (round.point(&r.from).unwrap(), *s))
            })
            .collect();
        let seed = shamir::combine(round.threshold, &shares).unwrap();
        // The victim added this pair mask when it sorts first.
        known.push((seed, victim >= w.as_str()));
    }
    // The colluder's share of the victim's self seed: one of five needed.
    let held = fed.held(&round, colluder, &bundles);
    let from_victim = held.iter().find(|h| h.from == victim).unwrap();
    let one = [(round.point(colluder).unwrap(), from_victim.self_share)];
    assert!(shamir::combine(round.threshold, &one).is_err());
    best.add_masks(&Masks::new(known));
    let seen = decrypt_integers(&fed.key, &best).unwrap();
    let s = fed.site(victim);
    let expected: Vec<i64> = fed.plain_sum(&ids(&[victim]));
    let hits = seen.iter().zip(&expected).filter(|(a, b)| a == b).count();
    assert!(hits <= 2, "{hits} of the victim's values readable");
    let c = chi2(&seen, bits);
    assert!(c < 50.0, "χ² {c} of the victim's best reconstruction");
    assert_ne!(*seen.last().unwrap(), s.weight as i64);

    // 4. The attack as it was: the full sum of every upload minus
    // the published sum. The victim's self mask is still in it.
    let mut full = Accumulator::new(&fed.key.public(), fed.len);
    for u in uploads.values() {
        full.add(u).unwrap();
    }
    let (all, part) = (
        decrypt_integers(&fed.key, &full).unwrap(),
        decrypt_integers(&fed.key, &published).unwrap(),
    );
    let half = 1i128 << (bits - 1);
    let range = 1i128 << bits;
    let diff: Vec<i64> = all
        .iter()
        .zip(&part)
        .map(|(a, b)| {
            let d = (*a as i128 - *b as i128).rem_euclid(range);
            (if d >= half { d - range } else { d }) as i64
        })
        .collect();
    let hits = diff.iter().zip(&expected).filter(|(a, b)| a == b).count();
    assert!(hits <= 2, "{hits} of the victim's values readable");
    let c = chi2(&diff, bits);
    assert!(c < 50.0, "χ² {c} of full sum − published sum");
}

/// Bundles are for one recipient, round and roster: tampered, redirected or
/// replayed into another attempt, they do not open.
#[test]
fn share_bundles_open_only_for_their_recipient_round_and_roster() {
    let fed = Federation::new(4, 10);
    let round = fed.round(3);
    let sealed = seal_shares(&fed.site("site-00").secret, &round, "site-00", &fed.keys).unwrap();
    assert_eq!(sealed.len(), 4);
    // Sealing again (a restart) gives the same bytes.
    assert_eq!(
        sealed,
        seal_shares(&fed.site("site-00").secret, &round, "site-00", &fed.keys).unwrap()
    );
    let to1 = sealed.iter().find(|b| b.to == "site-01").unwrap();
    let me = &fed.site("site-01").secret;
    let from = fed.public("site-00");
    open_shares(me, &round, "site-01", &from, to1).unwrap();
    let mut tampered = to1.clone();
    tampered.bytes[3] ^= 1;
    assert!(matches!(
        open_shares(me, &round, "site-01", &from, &tampered),
        Err(SecAggError::BadBundle { .. })
    ));
    // site-02 cannot open site-01's bundle, even relabelled.
    let mut redirected = to1.clone();
    redirected.to = "site-02".into();
    assert!(
        open_shares(
            &fed.site("site-02").secret,
            &round,
            "site-02",
            &from,
            &redirected
        )
        .is_err()
    );
    let next = MaskContext { attempt: 2, ..CTX };
    let other = SecAggRound::new(next, &fed.roster, 3).unwrap();
    assert!(open_shares(me, &other, "site-01", &from, to1).is_err());
}
