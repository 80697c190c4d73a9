//! [`RunConfig`]: the config of every registered study for one run, as TOML tables. It
//! starts from the defaults (or the small test configs), takes a TOML file (one table per
//! study id) and `ID.FIELD=VALUE` overrides, checks each against the study's typed config
//! (field known, type right, `validate()` passes), lists what differs from the defaults,
//! and prints itself as TOML. Every refusal is a [`ConfigError`] naming study, field,
//! value and what is allowed.

use thiserror::Error;
use toml::{Table, Value};

use crate::StudyError;
use crate::registry::{find, registry};
use crate::result::StudyResult;
use crate::study::{Entry, ProgressFn, Size};

/// Why a run's configuration was refused.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// No registered study has this id.
    #[error("unknown study `{study}` (known: {known})")]
    UnknownStudy {
        /// The id given.
        study: String,
        /// The registered ids, comma-separated.
        known: String,
    },
    /// The study's config has no such field.
    #[error("study `{study}` has no config field `{field}` (fields: {known})")]
    UnknownField {
        /// Study id.
        study: String,
        /// The field given.
        field: String,
        /// The study's fields, comma-separated.
        known: String,
    },
    /// The value does not have the field's type.
    #[error("`{study}.{field}` = {value}: wrong type, expected {expected}")]
    WrongType {
        /// Study id.
        study: String,
        /// Field name.
        field: String,
        /// The value given.
        value: String,
        /// What the field takes.
        expected: String,
    },
    /// An override or a config file that cannot be read as such.
    #[error("{source_name}: {message}")]
    Syntax {
        /// Where it came from (`--set ...`, the file name).
        source_name: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// The study's `validate()` refused a value.
    #[error(transparent)]
    Invalid(StudyError),
}

/// One config value that differs from the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Study id.
    pub study: &'static str,
    /// Field name.
    pub field: String,
    /// The value used, as TOML.
    pub value: String,
    /// The default, as TOML.
    pub default: String,
}

/// The config of every registered study for one run.
///
/// # Example
/// ```
/// use norm_experiments::{RunConfig, Size, find};
///
/// let mut cfg = RunConfig::new(Size::Full)?;
/// cfg.apply_set("pre-vs-post-norm.depths=[3, 6, 12, 24, 48]")?;
/// cfg.validate()?;
/// assert_eq!(cfg.changes().len(), 1);
/// assert!(cfg.apply_set("pre-vs-post-norm.depths=\"deep\"").is_err());
/// assert!(cfg.apply_set("no-such-study.x=1").is_err());
/// # Ok::<(), norm_experiments::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `(study, defaults, current)` in registry order.
    tables: Vec<(&'static Entry, Table, Table)>,
}

impl RunConfig {
    /// Every study at its default (or small) config.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] if a study's config cannot be written as TOML (a bug).
    pub fn new(size: Size) -> Result<Self, ConfigError> {
        let mut tables = Vec::new();
        for entry in registry() {
            let t = entry.config(size).map_err(ConfigError::Invalid)?;
            tables.push((entry, t.clone(), t));
        }
        Ok(Self { tables })
    }

    fn slot(&mut self, study: &str) -> Result<&mut (&'static Entry, Table, Table), ConfigError> {
        let known = known_studies();
        self.tables
            .iter_mut()
            .find(|(e, _, _)| e.id == study)
            .ok_or(ConfigError::UnknownStudy {
                study: study.to_owned(),
                known,
            })
    }

    /// Sets `study.field` to `value` (already parsed), checking the field and its type.
    ///
    /// # Errors
    /// [`ConfigError::UnknownStudy`], [`ConfigError::UnknownField`],
    /// [`ConfigError::WrongType`].
    pub fn set(&mut self, study: &str, field: &str, value: Value) -> Result<(), ConfigError> {
        let (entry, defaults, current) = self.slot(study)?;
        let Some(default) = defaults.get(field) else {
            return Err(ConfigError::UnknownField {
                study: study.to_owned(),
                field: field.to_owned(),
                known: defaults.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let wrong = |expected: String| ConfigError::WrongType {
            study: study.to_owned(),
            field: field.to_owned(),
            value: value.to_string(),
            expected,
        };
        let Some(v) = coerce(default, &value) else {
            return Err(wrong(describe(default)));
        };
        let mut trial = current.clone();
        trial.insert(field.to_owned(), v);
        // The type check proper: the table must still deserialize into the study's config
        // (e.g. a negative count for a `usize` field fails here).
        if let Err(StudyError::ConfigData { message, .. }) = entry.check(&trial) {
            return Err(wrong(format!("{} ({message})", describe(default))));
        }
        *current = trial;
        Ok(())
    }

    /// Applies one `ID.FIELD=VALUE` override; VALUE is TOML (`1e-5`, `[3, 6, 12]`,
    /// `true`); a bare word is taken as a string.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] without `.` or `=`, or as [`RunConfig::set`].
    pub fn apply_set(&mut self, assignment: &str) -> Result<(), ConfigError> {
        let syntax = |message: &str| ConfigError::Syntax {
            source_name: format!("--set `{assignment}`"),
            message: message.to_owned(),
        };
        let (key, raw) = assignment
            .split_once('=')
            .ok_or_else(|| syntax("expected ID.FIELD=VALUE, e.g. epsilon.dim=512"))?;
        let (study, field) = key
            .trim()
            .split_once('.')
            .ok_or_else(|| syntax("expected ID.FIELD=VALUE, e.g. epsilon.dim=512"))?;
        let raw = raw.trim();
        let value = match format!("v = {raw}").parse::<Table>() {
            Ok(mut t) => t.remove("v").unwrap_or(Value::String(raw.to_owned())),
            Err(_) => Value::String(raw.to_owned()),
        };
        self.set(study.trim(), field.trim(), value)
    }

    /// Applies a TOML document with one table per study id, e.g.
    /// `[epsilon]\ndim = 512`. `source_name` (a file name) appears in errors.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] for text that is not TOML or a top-level key that is not
    /// a table, or as [`RunConfig::set`].
    pub fn apply_toml(&mut self, text: &str, source_name: &str) -> Result<(), ConfigError> {
        let doc: Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            source_name: source_name.to_owned(),
            message: format!("not TOML: {}", e.message()),
        })?;
        for (study, fields) in doc {
            let Value::Table(fields) = fields else {
                // An unknown id is the more useful message when both apply.
                self.slot(&study)?;
                return Err(ConfigError::Syntax {
                    source_name: source_name.to_owned(),
                    message: format!("`{study}` must be a table: [{study}] with one FIELD = VALUE per line"),
                });
            };
            for (field, value) in fields {
                self.set(&study, &field, value)?;
            }
        }
        Ok(())
    }

    /// Runs every study's `validate()` on its current config.
    ///
    /// # Errors
    /// The first refusal, as [`ConfigError::Invalid`] (or `WrongType` if a table no
    /// longer fits its type).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (entry, _, current) in &self.tables {
            match entry.check(current) {
                Ok(()) => {}
                Err(StudyError::ConfigData { message, .. }) => {
                    return Err(ConfigError::Syntax {
                        source_name: format!("study `{}`", entry.id),
                        message,
                    });
                }
                Err(e) => return Err(ConfigError::Invalid(e)),
            }
        }
        Ok(())
    }

    /// Study `id`'s current config table.
    pub fn table(&self, id: &str) -> Option<&Table> {
        self.tables.iter().find(|(e, _, _)| e.id == id).map(|(_, _, t)| t)
    }

    /// Runs study `id` with its current config.
    ///
    /// # Errors
    /// [`StudyError::ConfigData`] for an unknown id, or the study's own errors.
    pub fn run(&self, id: &str, seed: u64) -> Result<StudyResult, StudyError> {
        self.run_with_progress(id, seed, &crate::study::no_progress)
    }

    /// [`RunConfig::run`], telling `progress` how far the study's measurement has got.
    ///
    /// # Errors
    /// As [`RunConfig::run`].
    pub fn run_with_progress(
        &self,
        id: &str,
        seed: u64,
        progress: ProgressFn<'_>,
    ) -> Result<StudyResult, StudyError> {
        match (find(id), self.table(id)) {
            (Some(entry), Some(table)) => entry.run_with_progress(table, seed, progress),
            _ => Err(StudyError::ConfigData {
                study: "registry",
                message: format!("unknown study `{id}`"),
            }),
        }
    }

    /// Every value that differs from the default, in registry and field order.
    pub fn changes(&self) -> Vec<ConfigChange> {
        let mut out = Vec::new();
        for (entry, defaults, current) in &self.tables {
            for (field, value) in current {
                let default = defaults.get(field);
                if default != Some(value) {
                    out.push(ConfigChange {
                        study: entry.id,
                        field: field.clone(),
                        value: show(value),
                        default: default.map_or_else(String::new, show),
                    });
                }
            }
        }
        out
    }

    /// The whole configuration as a TOML document, one table per study in report order
    /// (what `--print-config` writes and `--config` reads back).
    pub fn to_toml(&self) -> String {
        let mut s = String::from(
            "# Configuration of every study (cargo xtask report --config FILE.toml).\n\
             # Edit a value, or delete the lines you keep at their defaults.\n",
        );
        for (entry, _, current) in &self.tables {
            s.push_str(&format!("\n# {}\n[{}]\n", entry.title, entry.id));
            for (field, value) in current {
                s.push_str(&format!("{field} = {}\n", show(value)));
            }
        }
        s
    }
}

impl PartialEq for RunConfig {
    /// Same studies with the same defaults and current values.
    fn eq(&self, other: &Self) -> bool {
        self.tables.len() == other.tables.len()
            && self
                .tables
                .iter()
                .zip(&other.tables)
                .all(|(a, b)| a.0.id == b.0.id && a.1 == b.1 && a.2 == b.2)
    }
}

/// The registered ids, comma-separated.
fn known_studies() -> String {
    registry().iter().map(|e| e.id).collect::<Vec<_>>().join(", ")
}

/// `given` converted to the TOML type of `default` where that is lossless (an integer for
/// a float field), or `None` if the types differ.
fn coerce(default: &Value, given: &Value) -> Option<Value> {
    match (default, given) {
        (Value::Float(_), Value::Integer(i)) => Some(Value::Float(*i as f64)),
        (Value::Array(d), Value::Array(g)) => match d.first() {
            None => Some(given.clone()),
            Some(d0) => g
                .iter()
                .map(|v| coerce(d0, v))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
        },
        (Value::Table(d), Value::Table(g)) => {
            let mut out = d.clone();
            for (k, v) in g {
                out.insert(k.clone(), coerce(d.get(k)?, v)?);
            }
            Some(Value::Table(out))
        }
        (d, g) if d.same_type(g) => Some(g.clone()),
        _ => None,
    }
}

/// `v` as TOML, with floats in the shortest form that reads back exactly (`1e-20`, not
/// twenty zeros).
fn show(v: &Value) -> String {
    match v {
        Value::Float(f) if f.is_finite() => {
            let a = f.abs();
            if a != 0.0 && !(1e-3..1e6).contains(&a) {
                format!("{f:e}")
            } else {
                // `{:?}` keeps a `.0` on whole numbers, so TOML reads a float back.
                format!("{f:?}")
            }
        }
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(", ")),
        Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{k} = {}", show(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// What a field with this default takes, in words with the default as the example.
fn describe(default: &Value) -> String {
    let kind = match default {
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::String(_) => "a string",
        Value::Array(a) => match a.first() {
            Some(Value::Integer(_)) => "a list of integers",
            Some(Value::Float(_)) => "a list of numbers",
            _ => "a list",
        },
        Value::Table(_) => "a table",
        Value::Datetime(_) => "a date",
    };
    format!("{kind}, like the default {}", show(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RunConfig {
        RunConfig::new(Size::Small).expect("defaults serialize")
    }

    /// Any registered study and one of its integer fields.
    fn integer_field() -> (&'static str, String) {
        for e in registry() {
            let t = e.config(Size::Small).expect("serializes");
            if let Some((k, _)) = t.iter().find(|(_, v)| v.is_integer()) {
                return (e.id, k.clone());
            }
        }
        panic!("no study has an integer field")
    }

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        for size in [Size::Full, Size::Small] {
            let c = RunConfig::new(size).expect("defaults");
            c.validate().expect("defaults are valid");
            assert!(c.changes().is_empty());
            let mut back = RunConfig::new(size).expect("defaults");
            back.apply_toml(&c.to_toml(), "printed")
                .expect("reads its own output");
            assert_eq!(back, c);
        }
    }

    #[test]
    fn set_changes_one_value_and_lists_it() {
        let (study, field) = integer_field();
        let mut c = cfg();
        let old = c
            .table(study)
            .and_then(|t| t.get(&field))
            .and_then(Value::as_integer);
        let new = old.unwrap_or(0) + 1;
        c.apply_set(&format!("{study}.{field}={new}")).expect("valid");
        let ch = c.changes();
        assert_eq!(ch.len(), 1, "{ch:?}");
        assert_eq!((ch[0].study, ch[0].field.as_str()), (study, field.as_str()));
        assert_eq!(ch[0].value, new.to_string());
    }

    #[test]
    fn each_error_kind_names_what_was_wrong() {
        let (study, field) = integer_field();
        let mut c = cfg();
        match c.apply_set("no-such-study.x=1") {
            Err(ConfigError::UnknownStudy { study: s, known }) => {
                assert_eq!(s, "no-such-study");
                assert!(known.contains(study));
            }
            other => panic!("{other:?}"),
        }
        match c.apply_set(&format!("{study}.no_such_field=1")) {
            Err(ConfigError::UnknownField { field: f, known, .. }) => {
                assert_eq!(f, "no_such_field");
                assert!(known.contains(&field));
            }
            other => panic!("{other:?}"),
        }
        for bad in ["\"many\"", "1.5", "[1, 2]", "-3", "abc"] {
            match c.apply_set(&format!("{study}.{field}={bad}")) {
                Err(ConfigError::WrongType { expected, value, .. }) => {
                    assert!(expected.starts_with("an integer"), "{expected}");
                    assert!(!value.is_empty());
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        for bad in ["nodot=1", "noequals.x"] {
            assert!(
                matches!(c.apply_set(bad), Err(ConfigError::Syntax { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            c.apply_toml("this is = not [ toml", "f.toml"),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(matches!(
            c.apply_toml(&format!("{study} = 3"), "f.toml"),
            Err(ConfigError::Syntax { .. })
        ));
        // Nothing above changed anything.
        assert!(c.changes().is_empty());
        // A value of the right type that validate() refuses: every study refuses a zero
        // somewhere; find one and check the error names study and field.
        let mut refused = 0;
        for e in registry() {
            let t = e.config(Size::Small).expect("serializes");
            for (k, v) in &t {
                if v.is_integer() {
                    let mut c = cfg();
                    c.set(e.id, k, Value::Integer(0)).expect("type fits");
                    if let Err(ConfigError::Invalid(StudyError::InvalidConfig { study, field, .. })) =
                        c.validate()
                    {
                        assert_eq!((study, field), (e.id, k.as_str()));
                        refused += 1;
                    }
                }
            }
        }
        assert!(refused >= registry().len(), "only {refused} zero counts refused");
    }

    #[test]
    fn integers_are_accepted_for_float_fields() {
        for e in registry() {
            let t = e.config(Size::Small).expect("serializes");
            if let Some((k, _)) = t.iter().find(|(_, v)| v.is_float()) {
                let mut c = cfg();
                c.apply_set(&format!("{}.{k}=2", e.id)).expect("integer widens");
                assert_eq!(c.table(e.id).and_then(|t| t.get(k)), Some(&Value::Float(2.0)));
                return;
            }
        }
        panic!("no float field");
    }
}
