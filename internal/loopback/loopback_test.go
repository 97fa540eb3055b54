package loopback

import "testing"

func TestHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LocalHost": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true,
		"": false, "0.0.0.0": false, "10.0.0.1": false, "imap.example.nl": false, "localhost.example.nl": false,
		"::": false, "[::1": false, "127.0.0.1.example.nl": false,
	} {
		if got := Host(host); got != want {
			t.Errorf("Host(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9464": true, "localhost:143": true, "[::1]:25": true,
		"127.0.0.1": false, "0.0.0.0:9464": false, ":9464": false, "imap.example.nl:993": false, "192.0.2.1:9464": false, "bad": false,
	} {
		if got := Addr(addr); got != want {
			t.Errorf("Addr(%q) = %v, want %v", addr, got, want)
		}
	}
}
