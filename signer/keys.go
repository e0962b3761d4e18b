package signer

import (
	"crypto/hmac"
	"crypto/sha256"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
)

// keyCacheSize bounds the derived signing key cache. One entry serves one
// (secret, day, region, service); a proxy talks to a handful of those.
const keyCacheSize = 256

// keyID identifies one derived SigV4 signing key.
type keyID struct {
	secret, date, region, service string
}

// keyCache is a bounded cache of derived SigV4 signing keys.
type keyCache struct {
	once  sync.Once
	cache *lru.Cache[keyID, []byte]
}

func (c *keyCache) get(id keyID) []byte {
	c.once.Do(func() {
		// lru.New only fails for a size <= 0.
		c.cache, _ = lru.New[keyID, []byte](keyCacheSize)
	})
	if k, ok := c.cache.Get(id); ok {
		return k
	}
	k := deriveSigningKey(id.secret, id.date, id.region, id.service)
	c.cache.Add(id, k)
	return k
}

// SigningKey returns the SigV4 signing key for secretKey on date
// (YYYYMMDD) in region for service:
// HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request").
// Keys are cached (bounded) per secret, date, region and service. The
// returned slice is the caller's own copy.
func (s *Signer) SigningKey(secretKey, date, region, service string) []byte {
	k := s.keys.get(keyID{secret: secretKey, date: date, region: region, service: service})
	return append([]byte(nil), k...)
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
