package rig

import "secondopinion/internal/registry"

// The demo's people and organisations.
const (
	ServiceDomain  = "secondopinion.example"
	AddrBackoffice = "backoffice@" + ServiceDomain
	AddrEmployee   = "sahin.yilmaz@mail.example"
	AddrEmployee2  = "l.kowalski@mail.example"
	AddrEmployer   = "hr@acme.example"
	AddrOriginal   = "a.devries@arbo-noord.example"
	AddrBakker     = "b.bakker@arbo-zuid.example"
	AddrJansen     = "c.jansen@arbo-west.example"
	AddrVisser     = "d.visser@arbo-noord.example"
	AddrSmit       = "e.smit@arbo-oost.example"
)

// DemoRegistry is the embedded default registry: three arbodiensten, an
// original physician, second-opinion physicians in and outside the pool
// (one of them of the original physician's own arbodienst, whom the
// procedure never proposes), and the employer.
func DemoRegistry() *registry.Registry {
	return &registry.Registry{
		Arbodiensten: []registry.Arbodienst{
			{ID: "arbo-noord", Name: "Arbo Noord"},
			{ID: "arbo-zuid", Name: "Arbo Zuid"},
			{ID: "arbo-west", Name: "Arbodienst West"},
			{ID: "arbo-oost", Name: "Arbo Oost"},
		},
		Physicians: []registry.Physician{
			{ID: "devries", Name: "A. de Vries", Email: AddrOriginal, Arbodienst: "arbo-noord", Languages: []string{"nl"}, Roles: []string{registry.RoleOriginal}},
			{ID: "visser", Name: "D. Visser", Email: AddrVisser, Arbodienst: "arbo-noord", Pool: true, Languages: []string{"nl"}, Roles: []string{registry.RoleSecondOpinion}},
			{ID: "bakker", Name: "B. Bakker", Email: AddrBakker, Arbodienst: "arbo-zuid", Pool: true, Languages: []string{"nl", "en"}, Roles: []string{registry.RoleSecondOpinion}},
			{ID: "jansen", Name: "C. Jansen", Email: AddrJansen, Arbodienst: "arbo-west", Pool: true, Languages: []string{"nl"}, Roles: []string{registry.RoleSecondOpinion}},
			{ID: "smit", Name: "E. Smit", Email: AddrSmit, Arbodienst: "arbo-oost", Pool: false, Languages: []string{"nl"}, Roles: []string{registry.RoleSecondOpinion}},
		},
		Employers: []registry.Employer{
			{ID: "acme", Name: "Acme Logistiek BV", Contract: registry.ContractFullService, NoticeEmail: AddrEmployer, Domains: []string{"acme.example"}},
		},
	}
}
