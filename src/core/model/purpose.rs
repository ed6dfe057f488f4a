//! The purposes data may be processed for, and what a visitor said about each: the words every consent map uses
//! (`context.consent`, the profile's `consent`, `destinations[].purpose`, a TC string's mapping).

use serde::{Deserialize, Serialize};

/// Why data may be processed. `Necessary` is always allowed and cannot be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Purpose {
    Necessary,
    Analytics,
    Personalization,
    Advertising,
    /// E-mail, messaging and other sends to the person (journeys' destinations), asked for apart from advertising.
    Marketing,
}

impl Purpose {
    /// The purposes a visitor can grant or refuse.
    pub const OPTIONAL: [Purpose; 4] =
        [Purpose::Analytics, Purpose::Personalization, Purpose::Advertising, Purpose::Marketing];

    pub fn name(self) -> &'static str {
        match self {
            Purpose::Necessary => "necessary",
            Purpose::Analytics => "analytics",
            Purpose::Personalization => "personalization",
            Purpose::Advertising => "advertising",
            Purpose::Marketing => "marketing",
        }
    }

    /// Reads a purpose name, ignoring case (Segment's examples write `Analytics`).
    pub fn parse(s: &str) -> Option<Purpose> {
        Some(match s.to_ascii_lowercase().as_str() {
            "necessary" => Purpose::Necessary,
            "analytics" => Purpose::Analytics,
            "personalization" | "personalisation" => Purpose::Personalization,
            "advertising" => Purpose::Advertising,
            "marketing" => Purpose::Marketing,
            _ => return None,
        })
    }
}

/// What sent preferences say about each optional purpose (`None`: nothing). A fixed array rather than a map:
/// the browser build runs this on every call, and a map's code costs download size there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences(pub(crate) [Option<bool>; 4]);

impl Preferences {
    pub(crate) fn slot(p: Purpose) -> Option<usize> {
        match p {
            Purpose::Necessary => None,
            Purpose::Analytics => Some(0),
            Purpose::Personalization => Some(1),
            Purpose::Advertising => Some(2),
            Purpose::Marketing => Some(3),
        }
    }

    pub fn get(&self, p: Purpose) -> Option<bool> {
        Self::slot(p).and_then(|i| self.0[i])
    }

    pub fn set(&mut self, p: Purpose, granted: bool) {
        if let Some(i) = Self::slot(p) {
            self.0[i] = Some(granted);
        }
    }

    pub fn clear(&mut self, p: Purpose) {
        if let Some(i) = Self::slot(p) {
            self.0[i] = None;
        }
    }

    /// These decisions, and `other`'s for the purposes these leave open.
    pub fn or(self, other: Preferences) -> Preferences {
        Preferences(std::array::from_fn(|i| self.0[i].or(other.0[i])))
    }

    /// The purposes that were decided, with their decision.
    pub fn iter(&self) -> impl Iterator<Item = (Purpose, bool)> + '_ {
        Purpose::OPTIONAL.into_iter().filter_map(|p| self.get(p).map(|g| (p, g)))
    }
}
