//! The keyring: the symmetric keys, the public-key recipients and the identities an agent
//! or an operator holds, and an application developer's backup password.

use super::keys::{Key, KeyId};
use super::passphrase::Passphrase;
use super::recipient::{Identity, Recipient};

/// The keys an agent holds: the current key first (it encrypts), then previous ones (they
/// still decrypt, for key rotation); the public-key recipients new archives are also
/// encrypted for, and the identities that open archives made for recipients.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: Vec<Key>,
    /// Whether `keys[0]` is a current key; a keyring of recipients and previous keys has
    /// none, and no previous key ever encrypts.
    has_current: bool,
    recipients: Vec<Recipient>,
    identities: Vec<Identity>,
    passphrase: Option<Passphrase>,
}

impl Keyring {
    /// A keyring whose current key is `current`.
    pub fn new(current: Key) -> Self {
        Self {
            keys: vec![current],
            has_current: true,
            ..Self::default()
        }
    }

    /// Adds a recipient that new archives are encrypted for (it cannot decrypt).
    pub fn add_recipient(&mut self, recipient: Recipient) {
        if !self.recipients.contains(&recipient) {
            self.recipients.push(recipient);
        }
    }

    /// Adds an identity, which opens archives made for its recipient.
    pub fn add_identity(&mut self, identity: Identity) {
        if !self
            .identities
            .iter()
            .any(|i| i.recipient() == identity.recipient())
        {
            self.identities.push(identity);
        }
    }

    /// Sets the backup password, which opens archives that carry a password stanza.
    pub fn set_passphrase(&mut self, passphrase: Passphrase) {
        self.passphrase = Some(passphrase);
    }

    /// The backup password held, if any.
    pub fn passphrase(&self) -> Option<&Passphrase> {
        self.passphrase.as_ref()
    }

    /// The recipients new archives are encrypted for, beside the current key.
    pub fn recipients(&self) -> &[Recipient] {
        &self.recipients
    }

    /// The identities held.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// The identity whose recipient has this id, if held.
    pub fn find_identity(&self, id: KeyId) -> Option<&Identity> {
        self.identities.iter().find(|i| i.recipient().id() == id)
    }

    /// Whether this keyring can open any archive at all: it holds a key, an identity or a
    /// password.
    pub fn can_decrypt(&self) -> bool {
        !self.keys.is_empty() || !self.identities.is_empty() || self.passphrase.is_some()
    }

    /// Whether new archives can be encrypted: a current key or a recipient is held.
    pub fn can_encrypt(&self) -> bool {
        self.has_current || !self.recipients.is_empty()
    }

    /// Adds a previous key, accepted for decryption only.
    pub fn add_previous(&mut self, key: Key) {
        if !self.keys.iter().any(|k| k.id() == key.id()) {
            self.keys.push(key);
        }
    }

    /// The key new archives are encrypted with, if any.
    pub fn current(&self) -> Option<&Key> {
        self.keys.first().filter(|_| self.has_current)
    }

    /// The key with this id, if held.
    pub fn find(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id() == id)
    }

    /// The ids of every key held, current first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(Key::id).collect()
    }

    /// Whether nothing is held: no key, recipient, identity or password.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.recipients.is_empty()
            && self.identities.is_empty()
            && self.passphrase.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::KEY_LEN;
    use super::*;

    #[test]
    fn keyring_finds_previous_keys() {
        let a = Key::from_bytes([1u8; KEY_LEN]);
        let b = Key::from_bytes([2u8; KEY_LEN]);
        let mut ring = Keyring::new(a.clone());
        ring.add_previous(b.clone());
        ring.add_previous(b.clone());
        assert_eq!(ring.ids(), vec![a.id(), b.id()]);
        assert_eq!(ring.current().unwrap().id(), a.id());
        assert!(ring.find(b.id()).is_some());
    }

    #[test]
    fn a_previous_key_beside_recipients_never_becomes_current() {
        let mut ring = Keyring::default();
        ring.add_recipient(Identity::generate().unwrap().recipient());
        ring.add_previous(Key::from_bytes([3u8; KEY_LEN]));
        assert!(ring.current().is_none());
        assert!(ring.can_decrypt() && ring.can_encrypt());
        assert_eq!(ring.ids().len(), 1);
    }
}
