package fleet

import (
	"strings"
	"testing"
)

// hashTag is the part of a key Redis Cluster hashes: the first {...} with
// something inside, else the whole key.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

func TestFleetKeysShareOneHashTag(t *testing.T) {
	tests := []struct {
		name, ns, fn string
		wantTag      string
	}{
		{name: "function", ns: "skewproxy", fn: "my-fn", wantTag: "skewproxy/my-fn"},
		{name: "all functions", ns: "skewproxy", fn: "", wantTag: "skewproxy"},
		{name: "namespace with braces", ns: "a{b}", fn: "f", wantTag: "a%7Bb%7D/f"},
		{name: "function with braces", ns: "ns", fn: "x}y{", wantTag: "ns/x%7Dy%7B"},
		{name: "percent escaped", ns: "n%", fn: "f%7B", wantTag: "n%25/f%257B"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := keysFor(tc.ns, tc.fn)
			for _, key := range k.list() {
				if got := hashTag(key); got != tc.wantTag {
					t.Errorf("key %q hashes on %q, want %q", key, got, tc.wantTag)
				}
			}
			if tc.fn == "" {
				if got := hashTag(instancesKey(tc.ns)); got != tc.wantTag {
					t.Errorf("instances key %q hashes on %q, want %q", instancesKey(tc.ns), got, tc.wantTag)
				}
			}
		})
	}
	// Functions spread over the cluster: different functions, different tags.
	if hashTag(keysFor("ns", "a").leases) == hashTag(keysFor("ns", "b").leases) {
		t.Error("two functions share a hash tag")
	}
}

func TestFleetValidateURL(t *testing.T) {
	tests := []struct {
		url     string
		wantErr string
	}{
		{url: "redis://127.0.0.1:6379/0"},
		{url: "redis://user:secret@redis.internal:6379/2"},
		{url: "rediss://cache.example.com:6380"},
		{url: "redis://10.0.0.1:7000?cluster=true&addr=10.0.0.2:7000"},
		{url: "http://127.0.0.1:6379", wantErr: "scheme"},
		{url: "redis:///0", wantErr: "HOST:PORT"},
		{url: "redis://:secret@127.0.0.1:6379/x", wantErr: "database"},
		{url: "redis://127.0.0.1:6379?bogus_option=1", wantErr: "bogus_option"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			err := ValidateURL(tc.url)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ValidateURL: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("ValidateURL = %v, want an error about %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Fatalf("the error quotes the password: %v", err)
			}
		})
	}
}
