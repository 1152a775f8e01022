"""PKI tooling: the bank CA, gateway and bank certificates, revocation and CRLs, key loading."""
