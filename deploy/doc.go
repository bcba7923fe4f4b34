// Package deploy holds no code: it is the home of the Dockerfiles
// (deploy/docker), the Nomad jobs (deploy/nomad) and the ioproxy
// configuration they run (deploy/ioproxy.hcl). Its tests parse every HCL
// file here and in examples/, and check that the Dockerfiles build from
// paths that exist, so that a broken deployment file cannot land.
package deploy
