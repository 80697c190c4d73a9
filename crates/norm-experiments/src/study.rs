//! The `Study` trait every study implements (typed config, typed measurements, and the
//! three steps measure → findings → figure) and [`Entry`], the type-erased registry entry
//! a generic adapter builds from any `Study`. No study lives here.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StudyError;
use crate::result::{Figure, Finding, StudyResult};

/// How far a long measurement has got: `done` of `total` units of work (e.g. training
/// runs), and what the last finished one was. Reported through a [`ProgressFn`]; it never
/// changes a number, and studies never print it themselves (they do no I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// Units finished so far (counts up to `total`; units may finish in any order).
    pub done: usize,
    /// Units in the whole measurement.
    pub total: usize,
    /// The unit that just finished, in a few words.
    pub what: &'a str,
}

/// Receives [`Progress`] while a study measures; called from any of the study's threads.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress<'_>) + Sync);

/// A [`ProgressFn`] that ignores everything.
pub fn no_progress(_: Progress<'_>) {}

/// A study's configuration: plain serde data with defaults, a test size and one
/// validation step.
pub trait StudyConfig:
    Default + Clone + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// A small configuration for tests (seconds at most in a debug build).
    fn small() -> Self;

    /// Checks every field.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] naming the study, the field, the value and what is
    /// allowed.
    fn validate(&self) -> Result<(), StudyError>;
}

/// One study of the report: what it measures, what it concludes, what it draws.
///
/// The three steps are separate so that numbers, sentences and panels never mix:
/// `measure` computes typed numbers only; `findings` and `explanation` write sentences
/// from those numbers; `figure` lays the same numbers out as panels. Tests assert fields
/// of [`Study::Measurements`], never strings.
pub trait Study {
    /// Stable id, e.g. `layernorm-distribution` (file names, `--only`, `--set`).
    const ID: &'static str;
    /// Title, e.g. "LayerNorm Distribution".
    const TITLE: &'static str;
    /// The seed document's summary line for this study.
    const SUMMARY: &'static str;

    /// The configuration (serde data, settable with `--set ID.FIELD=VALUE`).
    type Config: StudyConfig;
    /// Everything measured: a plain typed struct.
    type Measurements: Serialize;

    /// Runs the measurements. Called only with a validated config.
    ///
    /// # Errors
    /// A kernel or layer error (`StudyError::Norm`, `StudyError::Grad`).
    fn measure(cfg: &Self::Config, seed: u64) -> Result<Self::Measurements, StudyError>;

    /// [`Study::measure`], telling `progress` how far it has got. Only long studies
    /// override it (and then implement `measure` as this with [`no_progress`]); the
    /// default ignores `progress`. The numbers are the same either way.
    ///
    /// # Errors
    /// As [`Study::measure`].
    fn measure_with_progress(
        cfg: &Self::Config,
        seed: u64,
        progress: ProgressFn<'_>,
    ) -> Result<Self::Measurements, StudyError> {
        let _ = progress;
        Self::measure(cfg, seed)
    }

    /// The findings: measured values with the statements they support, built from the
    /// typed measurements. Exactly one has `summary: true`.
    fn findings(cfg: &Self::Config, m: &Self::Measurements) -> Vec<Finding>;

    /// A short explanation of what the study shows and how (plain-text paragraphs).
    fn explanation(cfg: &Self::Config, m: &Self::Measurements) -> Vec<String>;

    /// The figure, as panels of data.
    fn figure(cfg: &Self::Config, m: &Self::Measurements) -> Figure;

    /// What to look at in the figure: a reading guide naming panels by letter ((a), (b),
    /// ...) and what to compare in them. It points; the findings state the numbers. Every
    /// registered study gives one (the registry tests check it); empty by default.
    fn caption(_cfg: &Self::Config, _m: &Self::Measurements) -> String {
        String::new()
    }

    /// Wall-clock measurements taken during `measure` (vary run to run; they go only to
    /// the timings files). None by default.
    fn timings(_m: &Self::Measurements) -> Vec<Finding> {
        Vec::new()
    }

    /// validate → measure → findings, explanation, figure.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] from [`StudyConfig::validate`], or an error of
    /// [`Study::measure`].
    fn run(cfg: &Self::Config, seed: u64) -> Result<StudyResult, StudyError> {
        Self::run_with_progress(cfg, seed, &no_progress)
    }

    /// [`Study::run`], passing `progress` to [`Study::measure_with_progress`].
    ///
    /// # Errors
    /// As [`Study::run`].
    fn run_with_progress(
        cfg: &Self::Config,
        seed: u64,
        progress: ProgressFn<'_>,
    ) -> Result<StudyResult, StudyError> {
        cfg.validate()?;
        let m = Self::measure_with_progress(cfg, seed, progress)?;
        Ok(StudyResult {
            id: Self::ID.to_owned(),
            title: Self::TITLE.to_owned(),
            explanation: Self::explanation(cfg, &m),
            figure: Self::figure(cfg, &m),
            caption: Self::caption(cfg, &m),
            findings: Self::findings(cfg, &m),
            config: config_table(Self::ID, cfg)?,
            timings: Self::timings(&m),
        })
    }
}

/// A config as a TOML table (the form `--set`, `--config` and the data files use).
pub(crate) fn config_table<C: Serialize>(id: &'static str, cfg: &C) -> Result<toml::Table, StudyError> {
    toml::Table::try_from(cfg).map_err(|e| StudyError::ConfigData {
        study: id,
        message: e.to_string(),
    })
}

/// A typed config from a TOML table.
pub(crate) fn config_from_table<C: DeserializeOwned>(
    id: &'static str,
    table: &toml::Table,
) -> Result<C, StudyError> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| StudyError::ConfigData {
            study: id,
            message: e.message().to_owned(),
        })
}

/// Which config a registry run uses when none is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The full-size study (each study's `Config::default()`).
    Full,
    /// The small config used by tests.
    Small,
}

/// A registered study with its types erased: what the registry lists and xtask runs.
/// Built from any [`Study`] by [`Entry::of`].
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Stable id, e.g. `layernorm-distribution`.
    pub id: &'static str,
    /// Title, e.g. "LayerNorm Distribution".
    pub title: &'static str,
    /// The seed document's summary line for this study.
    pub summary: &'static str,
    config: fn(Size) -> Result<toml::Table, StudyError>,
    check: fn(&toml::Table) -> Result<(), StudyError>,
    run: fn(&toml::Table, u64, ProgressFn<'_>) -> Result<StudyResult, StudyError>,
}

impl Entry {
    /// The registry entry of study `S`.
    pub const fn of<S: Study>() -> Self {
        Self {
            id: S::ID,
            title: S::TITLE,
            summary: S::SUMMARY,
            config: config_of::<S>,
            check: check_of::<S>,
            run: run_of::<S>,
        }
    }

    /// The study's default (or small) config as a TOML table.
    ///
    /// # Errors
    /// [`StudyError::ConfigData`] if the config cannot be written as TOML (a bug in the
    /// study's config type).
    pub fn config(&self, size: Size) -> Result<toml::Table, StudyError> {
        (self.config)(size)
    }

    /// Checks that `table` is a valid config of this study: it deserializes into the
    /// study's config type and passes its validation.
    ///
    /// # Errors
    /// [`StudyError::ConfigData`] (wrong type, unknown field) or
    /// [`StudyError::InvalidConfig`] (a value `validate()` refuses).
    pub fn check(&self, table: &toml::Table) -> Result<(), StudyError> {
        (self.check)(table)
    }

    /// Runs the study with the config in `table` and the run seed.
    ///
    /// # Errors
    /// As [`Entry::check`], or the study's own errors.
    pub fn run(&self, table: &toml::Table, seed: u64) -> Result<StudyResult, StudyError> {
        (self.run)(table, seed, &no_progress)
    }

    /// [`Entry::run`], telling `progress` how far the measurement has got (studies that
    /// report none never call it).
    ///
    /// # Errors
    /// As [`Entry::run`].
    pub fn run_with_progress(
        &self,
        table: &toml::Table,
        seed: u64,
        progress: ProgressFn<'_>,
    ) -> Result<StudyResult, StudyError> {
        (self.run)(table, seed, progress)
    }

    /// Runs the study at its default or small size.
    ///
    /// # Errors
    /// As [`Entry::run`].
    pub fn run_sized(&self, seed: u64, size: Size) -> Result<StudyResult, StudyError> {
        self.run(&self.config(size)?, seed)
    }
}

fn config_of<S: Study>(size: Size) -> Result<toml::Table, StudyError> {
    match size {
        Size::Full => config_table(S::ID, &S::Config::default()),
        Size::Small => config_table(S::ID, &S::Config::small()),
    }
}

fn check_of<S: Study>(table: &toml::Table) -> Result<(), StudyError> {
    config_from_table::<S::Config>(S::ID, table)?.validate()
}

fn run_of<S: Study>(
    table: &toml::Table,
    seed: u64,
    progress: ProgressFn<'_>,
) -> Result<StudyResult, StudyError> {
    S::run_with_progress(&config_from_table::<S::Config>(S::ID, table)?, seed, progress)
}
