// The SAML 2.0 identity provider of Portcullis's single sign-on tests:
// crewjam/saml's samlidp (its users, service providers, login form, signed
// responses) on a loopback port it picks itself, so that no other process
// can take the port between choosing and binding it.
//
// Besides samlidp's own HTTP API (PUT /users/{id}, PUT /services/{id}) it
// has one test hook, POST /test/signing-key: the IdP signs with a new key
// from then on. `?publish=false` keeps the metadata naming the old
// certificate (a key the service provider has never been told about);
// `?validFor=-1h` makes the new certificate one that has already expired.
//
// Prints "listening http://127.0.0.1:PORT" once it accepts connections.
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"

	"github.com/crewjam/saml/samlidp"
)

func newKeyPair(validFor time.Duration) (*rsa.PrivateKey, *x509.Certificate) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		log.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	notAfter := time.Now().Add(validFor)
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "portcullis test idp"},
		NotBefore:    notAfter.Add(-2 * 365 * 24 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	return key, cert
}

// idp is samlidp's server with the metadata it publishes kept apart.
type idp struct {
	mu        sync.Mutex
	server    *samlidp.Server
	published []byte
}

func (i *idp) publish() {
	recorder := httptest.NewRecorder()
	i.server.IDP.ServeMetadata(recorder, httptest.NewRequest(http.MethodGet, "/metadata", nil))
	i.published = recorder.Body.Bytes()
}

func (i *idp) metadata(w http.ResponseWriter, _ *http.Request) {
	i.mu.Lock()
	defer i.mu.Unlock()
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	_, _ = w.Write(i.published)
}

func (i *idp) signingKey(w http.ResponseWriter, r *http.Request) {
	validFor := 365 * 24 * time.Hour
	if text := r.URL.Query().Get("validFor"); text != "" {
		parsed, err := time.ParseDuration(text)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		validFor = parsed
	}
	key, cert := newKeyPair(validFor)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.server.IDP.Key = key
	i.server.IDP.Certificate = cert
	if r.URL.Query().Get("publish") != "false" {
		i.publish()
	}
	w.WriteHeader(http.StatusNoContent)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "the loopback address to listen on")
	flag.Parse()
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	base, err := url.Parse("http://" + listener.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	key, cert := newKeyPair(365 * 24 * time.Hour)
	server, err := samlidp.New(samlidp.Options{
		URL:         *base,
		Key:         key,
		Certificate: cert,
		Store:       &samlidp.MemoryStore{},
	})
	if err != nil {
		log.Fatal(err)
	}
	i := &idp{server: server}
	i.publish()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata", i.metadata)
	mux.HandleFunc("POST /test/signing-key", i.signingKey)
	mux.Handle("/", server)
	fmt.Printf("listening %s\n", base)
	log.Fatal(http.Serve(listener, mux))
}
