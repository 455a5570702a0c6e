//! `#[derive(QatModule)]` for burn-qat: a hand-written `#[derive(Module)]` model made of QAT
//! modules gets, from one line, what the workflow's `QatModel` has built in:
//!
//! - `burn_qat::nn::QatModule` (`disable_observer`, `freeze_bn_stats`, `set_training`, ...),
//!   reaching every field;
//! - `SaveStateDict` / `LoadStateDict` in PyTorch's layout, each field under its name;
//! - with `#[qat(int8 = Int8Name)]` on the struct, a struct `Int8Name` holding each field's int8
//!   module, and `fn convert(&self) -> burn_qat::Result<Int8Name>`, which converts the fields in
//!   declaration order, each taking its input qparams from the output of the field before it.
//!
//! Field attributes: `#[qat(skip)]` leaves a field out of all of it (a plain config value, say);
//! `#[qat(input)]` marks the quant stub that starts the chain (a `QatQuantStub`); and
//! `#[qat(after = name)]` takes a field's input from field `name` instead of the field before
//! (a branch, or a layer after a residual addition computed in `forward`).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::{Data, DeriveInput, Fields, Ident, parse_macro_input};

/// What `#[qat(...)]` said about one field.
#[derive(Default)]
struct FieldOptions {
    skip: bool,
    input: bool,
    after: Option<Ident>,
}

fn field_options(attrs: &[syn::Attribute]) -> syn::Result<FieldOptions> {
    let mut options = FieldOptions::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("qat")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                options.skip = true;
            } else if meta.path.is_ident("input") {
                options.input = true;
            } else if meta.path.is_ident("after") {
                options.after = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error("expected `skip`, `input` or `after = field`"));
            }
            Ok(())
        })?;
    }
    Ok(options)
}

fn int8_name(attrs: &[syn::Attribute]) -> syn::Result<Option<Ident>> {
    let mut name = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("qat")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("int8") {
                name = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("expected `int8 = Int8StructName`"))
            }
        })?;
    }
    Ok(name)
}

#[proc_macro_derive(QatModule, attributes(qat))]
pub fn derive_qat_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(input).unwrap_or_else(syn::Error::into_compile_error).into()
}

fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(Span::call_site(), "#[derive(QatModule)] needs a struct with named fields"));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new(Span::call_site(), "#[derive(QatModule)] needs a struct with named fields"));
    };
    let mut fields = Vec::new();
    for field in &named.named {
        let options = field_options(&field.attrs)?;
        if !options.skip {
            fields.push((field.ident.clone().expect("named field"), field.ty.clone(), options));
        }
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let idents: Vec<&Ident> = fields.iter().map(|(ident, _, _)| ident).collect();
    let keys: Vec<String> = idents.iter().map(|i| format!("{i}.")).collect();
    let krate = quote!(::burn_qat);

    let switches = quote! {
        impl #impl_generics #krate::nn::QatModule for #name #ty_generics #where_clause {
            fn fake_quants_mut(&mut self) -> ::std::vec::Vec<&mut #krate::fake_quantize::FakeQuantize> {
                let mut out = ::std::vec::Vec::new();
                #( out.extend(#krate::nn::QatModule::fake_quants_mut(&mut self.#idents)); )*
                out
            }
            fn set_training(&mut self, mode: bool) {
                #( #krate::nn::QatModule::set_training(&mut self.#idents, mode); )*
            }
            fn freeze_bn_stats(&mut self) {
                #( #krate::nn::QatModule::freeze_bn_stats(&mut self.#idents); )*
            }
            fn update_bn_stats(&mut self) {
                #( #krate::nn::QatModule::update_bn_stats(&mut self.#idents); )*
            }
        }

        impl #impl_generics #krate::state_dict::SaveStateDict for #name #ty_generics #where_clause {
            fn write_state(&self, prefix: &str, out: &mut #krate::state_dict::StateDict) {
                #( #krate::state_dict::SaveStateDict::write_state(&self.#idents, &::std::format!("{prefix}{}", #keys), out); )*
            }
        }

        impl #impl_generics #krate::state_dict::LoadStateDict for #name #ty_generics #where_clause {
            fn read_state(&mut self, prefix: &str, reader: &mut #krate::state_dict::StateReader<'_>) {
                #( #krate::state_dict::LoadStateDict::read_state(&mut self.#idents, &::std::format!("{prefix}{}", #keys), reader); )*
            }
        }
    };

    let Some(int8) = int8_name(&input.attrs)? else { return Ok(switches) };
    let vis = &input.vis;
    let mut int8_fields = Vec::new();
    let mut steps = Vec::new();
    for (i, (ident, ty, options)) in fields.iter().enumerate() {
        let layer = ident.to_string();
        // Caught here rather than when `convert` runs: `after` must name a field declared before.
        if let Some(after) = &options.after
            && !fields[..i].iter().any(|(earlier, _, _)| earlier == after)
        {
            return Err(syn::Error::new(after.span(), format!("#[qat(after = {after})]: no field {after} is declared before {ident}")));
        }
        if options.input {
            int8_fields.push(quote!(pub #ident: #krate::nn::quantized::Quantize));
            steps.push(quote!(let #ident = __chain.quantize_input(&self.#ident, #layer)?;));
        } else {
            let after = match &options.after {
                Some(after) => {
                    let after = after.to_string();
                    quote!(::std::option::Option::Some(#after))
                }
                None => quote!(::std::option::Option::None),
            };
            int8_fields.push(quote!(pub #ident: <#ty as #krate::workflow::ToQuantized>::Quantized));
            steps.push(quote!(let #ident = __chain.convert(&self.#ident, #layer, #after)?;));
        }
    }
    let doc = format!(
        "The int8 counterpart of [`{name}`], made by [`{name}::convert`]: each field the converted QAT field. \
         Its forward is yours to write, as the QAT model's is."
    );
    Ok(quote! {
        #switches

        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #int8 {
            #( #int8_fields, )*
        }

        impl #impl_generics #name #ty_generics #where_clause {
            /// Converts every field to int8 in declaration order (BN folded with the running
            /// statistics, weights quantized with their fake quants' qparams), each taking its
            /// input qparams from the output of the field before it or the one named by `after`:
            /// the conversion chain `convert` walks a model's layer table with.
            // A struct with nothing to convert leaves the chain unused.
            #[allow(unused_mut, unused_variables)]
            #vis fn convert(&self) -> #krate::Result<#int8> {
                let mut __chain = #krate::workflow::ConvertChain::new();
                #( #steps )*
                Ok(#int8 { #( #idents, )* })
            }
        }
    })
}
