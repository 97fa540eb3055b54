// Package pgpmime owns secure delivery of medical content: the service's own
// OpenPGP key, the participants' public keys in the keys directory, the
// judgement whether a key may be used at a given moment, and OpenPGP mail in
// both directions.
//
// Medical content (documents, advice, a physician's statements) travels only
// encrypted and signed; there is no plaintext fallback (NTA 7516). A
// recipient whose key is missing or unusable yields ErrNoUsableKey, and the
// caller sends a content-free notice instead.
//
// Writing follows RFC 3156 §4 and §6.2: a multipart/encrypted message whose
// second part is one ASCII-armored OpenPGP message that is both signed and
// encrypted; the decrypted content is an ordinary MIME entity
// (multipart/mixed with a UTF-8 text/plain part and base64 attachments) as
// Thunderbird and other OpenPGP clients expect. Attachments are streamed
// through the encryption, so a 100 MB file is never held in memory.
//
// Reading accepts RFC 3156 multipart/encrypted (signed inside the encrypted
// payload per §6.2, or a multipart/signed entity inside it per §6.1) and
// inline PGP (an armored message in a text/plain body). Signature results are
// data (SigStatus); medical content requires StatusValid by the key
// registered for the sender's address (RequireSignedBy).
//
// Documents at rest are sealed to the service key (SealForService) and
// opened only to be re-encrypted for a recipient (OpenSealed).
//
// Keys are loaded with github.com/ProtonMail/gopenpgp/v2; the streaming
// encryption and verification use its underlying library,
// github.com/ProtonMail/go-crypto, directly, because gopenpgp takes the
// signature time from a process-wide clock that only moves forward, while
// signature times here come from the caller's clock. One layer is written
// here: the encryption itself (SEIPD version 1, AES in CFB mode with a
// SHA-1 modification detection code), through crypto/cipher, which runs it
// twice as fast as go-crypto's own CFB (seipd.go).
package pgpmime
