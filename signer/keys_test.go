package signer

import (
	"bytes"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

func TestSigningKey(t *testing.T) {
	s := New(credentials.NewStaticCredentialsProvider("A", "S", ""), Options{})
	// The derived key of the IAM documentation example
	// (wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20150830, us-east-1, iam).
	const want = "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
	cases := []struct {
		name                          string
		secret, date, region, service string
		want                          string
	}{
		{"iam doc example", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam", want},
		{"same again from the cache", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam", want},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := s.SigningKey(tc.secret, tc.date, tc.region, tc.service)
			if got := hex.EncodeToString(k); got != tc.want {
				t.Fatalf("key %s, want %s", got, tc.want)
			}
			k[0] ^= 0xff // the caller's copy: must not poison the cache
		})
	}
	// Independent derivation for another scope and day.
	day := time.Date(2031, 2, 3, 0, 0, 0, 0, time.UTC)
	k := s.SigningKey("other", "20310203", "eu-west-1", "s3")
	sts := "x"
	if got, want := hex.EncodeToString(checkHMAC(k, sts)), checkSig("other", day, "eu-west-1", "s3", sts); got != want {
		t.Errorf("key disagrees with the independent derivation")
	}
	// The cache stays bounded.
	for i := 0; i < 3*keyCacheSize; i++ {
		s.SigningKey("s", "20310203", "r", string(rune('a'+i%26))+hex.EncodeToString([]byte{byte(i), byte(i >> 8)}))
	}
	if n := s.keys.cache.Len(); n > keyCacheSize {
		t.Errorf("cache holds %d keys, bound is %d", n, keyCacheSize)
	}
}

func TestSigningKeyConcurrent(t *testing.T) {
	s := New(credentials.NewStaticCredentialsProvider("A", "S", ""), Options{})
	want := s.SigningKey("secret", "20310101", "us-east-1", "s3")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				if !bytes.Equal(s.SigningKey("secret", "20310101", "us-east-1", "s3"), want) {
					t.Error("key changed")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestSigningKeyAlternatingScopes: the last-key memo in front of the LRU
// never answers for another secret, day, region or service.
func TestSigningKeyAlternatingScopes(t *testing.T) {
	s := New(credentials.NewStaticCredentialsProvider("A", "S", ""), Options{})
	scopes := []struct {
		name                          string
		secret, date, region, service string
	}{
		{"s3", "secret", "20310101", "us-east-1", "s3"},
		{"lambda", "secret", "20310101", "us-east-1", "lambda"},
		{"other region", "secret", "20310101", "eu-west-1", "lambda"},
		{"next day", "secret", "20310102", "eu-west-1", "lambda"},
		{"rotated secret", "secret2", "20310102", "eu-west-1", "lambda"},
	}
	for round := 0; round < 3; round++ {
		for _, sc := range scopes {
			for rep := 0; rep < 2; rep++ { // a memo hit on the second
				got := s.SigningKey(sc.secret, sc.date, sc.region, sc.service)
				if want := deriveSigningKey(sc.secret, sc.date, sc.region, sc.service); !bytes.Equal(got, want) {
					t.Fatalf("round %d, %s: wrong key", round, sc.name)
				}
			}
		}
	}
}
