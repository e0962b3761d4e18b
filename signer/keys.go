package signer

import (
	"crypto/hmac"
	"crypto/sha256"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
)

// keyCacheSize bounds the derived signing key cache. One entry serves one
// (secret, day, region, service); a proxy talks to a handful of those.
const keyCacheSize = 256

// keyID identifies one derived SigV4 signing key. The day is an array,
// not a string, so that the signing hot path builds the key without an
// allocation.
type keyID struct {
	secret, region, service string
	date                    [8]byte // YYYYMMDD
}

// keyCache is a bounded cache of derived SigV4 signing keys, with the
// last key used in front of it (a proxy signs for one scope most of the
// time, and then the lock and hash of the LRU are skipped).
type keyCache struct {
	once  sync.Once
	cache *lru.Cache[keyID, *keyEntry]
	last  atomic.Pointer[keyEntry]
}

// keyEntry is one derived key; entries are never modified once made.
type keyEntry struct {
	id  keyID
	key []byte
}

// get returns the cached key for id, deriving it on a miss. The returned
// slice is shared: callers must not modify it.
func (c *keyCache) get(id keyID) []byte {
	if e := c.last.Load(); e != nil && e.id == id {
		return e.key
	}
	c.once.Do(c.init)
	e, ok := c.cache.Get(id)
	if !ok {
		e = &keyEntry{id: id, key: deriveSigningKey(id.secret, string(id.date[:]), id.region, id.service)}
		c.cache.Add(id, e)
	}
	c.last.Store(e)
	return e.key
}

func (c *keyCache) init() {
	// lru.New only fails for a size <= 0.
	c.cache, _ = lru.New[keyID, *keyEntry](keyCacheSize)
}

// SigningKey returns the SigV4 signing key for secretKey on date
// (YYYYMMDD) in region for service:
// HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request").
// Keys are cached (bounded) per secret, date, region and service. The
// returned slice is the caller's own copy.
func (s *Signer) SigningKey(secretKey, date, region, service string) []byte {
	if len(date) != len(keyID{}.date) {
		return deriveSigningKey(secretKey, date, region, service)
	}
	id := keyID{secret: secretKey, region: region, service: service}
	copy(id.date[:], date)
	return append([]byte(nil), s.keys.get(id)...)
}

func deriveSigningKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "aws4_request")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// hmacBlock is the SHA-256 block size, the HMAC pad length.
const hmacBlock = 64

// appendInnerPad appends the HMAC inner pad of key (at most one block
// long, as every derived SigV4 key is) to dst: the first block of the
// inner hash input, RFC 2104.
func appendInnerPad(dst, key []byte) []byte {
	for i := 0; i < hmacBlock; i++ {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		dst = append(dst, k^0x36)
	}
	return dst
}

// hmacFinish completes HMAC-SHA256 with key over a message whose inner
// hash input (appendInnerPad of key, then the message) is inner. It
// allocates nothing: the caller provides inner and the outer block lives
// on the stack.
func hmacFinish(key, inner []byte) [sha256.Size]byte {
	ih := sha256.Sum256(inner)
	var outer [hmacBlock + sha256.Size]byte
	for i := 0; i < hmacBlock; i++ {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		outer[i] = k ^ 0x5c
	}
	copy(outer[hmacBlock:], ih[:])
	return sha256.Sum256(outer[:])
}
